// An example flow step for runtime="command": it keeps a value in its run's state and
// emits one trigger per item (a fan-out), through the worker.
//   @app.task(flow="mixed", entry=True, emits=["item"], runtime="command",
//             command=["node", "examples/command/flow_step.js"])
'use strict'
const { run } = require('./workhorse-job')

run(async (job, ctx) => {
  const items = job.data
  await ctx.state.set('count', items.length)
  for (const x of items) await ctx.flow.emit('item', x)
  return { run: ctx.flow.runId, step: ctx.flow.step, count: await ctx.state.get('count') }
})
