// A command job for the tests, built on examples/command/workhorse-job.js.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const { run } = require(path.join(__dirname, '..', '..', '..', 'examples', 'command', 'workhorse-job'))

run(async (job, ctx) => {
  const data = job.data
  switch (data.action) {
    case 'all': {
      ctx.log('hello from node', { lang: 'node' })
      console.error('a line on stderr')
      await ctx.progress(40)
      const before = await ctx.state.get('count')
      await ctx.state.set('count', (before || 0) + 1)
      await ctx.emit('test.node', { n: data.n })
      const follow = await ctx.enqueue('follow', { from: 'node' })
      return {
        pid: process.pid,
        before,
        after: await ctx.state.get('count'),
        follow: follow.id,
        attempt: ctx.attempt,
        n: data.n * 2
      }
    }
    case 'fail':
      throw new RangeError('bad input: ' + data.n)
    case 'fatal': {
      const err = new Error('give up')
      err.fatal = true
      throw err
    }
    case 'sleep':
      fs.writeFileSync(data.pid_file, String(process.pid))
      await new Promise((resolve) => setTimeout(resolve, 60000))
      return null
    case 'exit':
      process.stderr.write('about to exit\n')
      process.exit(3)
      break
    case 'noop':
      return null
    default:
      throw new Error('unknown action ' + data.action)
  }
})
