// An example job for runtime="command":
//   @app.task(runtime="command", command=["node", "examples/command/wordcount.js"])
//   def wordcount(data: dict) -> dict: ...   # the body never runs; it types the payload
'use strict'
const { run } = require('./workhorse-job')

run(async (job, ctx) => {
  const words = String(job.data.text || '').split(/\s+/).filter(Boolean)
  ctx.log('counting', { words: words.length })
  await ctx.progress(100)
  const runs = ((await ctx.state.get('runs')) || 0) + 1
  await ctx.state.set('runs', runs)
  return { words: words.length, runs }
})
