// A tiny helper for workhorse jobs written for Node.js, run with runtime="command".
//
//   // resize.js
//   const { run } = require('./workhorse-job')
//   run(async (job, ctx) => {
//     ctx.log('resizing', { width: job.data.width })
//     await ctx.progress(50)
//     const seen = (await ctx.state.get('seen')) ?? 0
//     await ctx.state.set('seen', seen + 1)
//     await ctx.emit('image.resized', { id: job.data.id })
//     await ctx.enqueue('notify', { id: job.data.id })
//     return { ok: true }
//   })
//
// It speaks the protocol of docs/runtimes.md over stdin/stdout with no dependencies (copy
// it next to your job). console.log still works: it is sent to stderr, and stderr lines
// go into the job's log. Throw to fail the attempt (retried as the task's `retries`
// allow); throw an error with `fatal = true` to fail it for good.
'use strict'

const readline = require('node:readline')

const out = process.stdout
const send = (message) => out.write(JSON.stringify(message) + '\n')
// A stray console.log must not break the protocol: it goes to stderr, into the job's log.
console.log = (...args) => console.error(...args)

let nextId = 0
const pending = new Map()

function call (method, params) {
  const id = ++nextId
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject })
    send({ type: 'call', id, method, params })
  })
}

function flowContext (job) {
  if (!job.flow) return null
  return {
    runId: job.flow.run_id,
    flow: job.flow.flow,
    step: job.flow.step,
    emit: (trigger, data) => call('flow.emit', { trigger, data }),
    start: (flow, data) => call('flow.start', { flow, data }),
    cancel: () => call('flow.cancel', {})
  }
}

// A flow step's state is its run's (scope 'global': shared by all runs).
const flowState = {
  get: async (key, scope = 'run') => {
    const got = await call('flow.state.get', { key, scope })
    return got.found ? got.value : undefined
  },
  set: (key, value, ttl = null, scope = 'run') => call('flow.state.set', { key, value, ttl, scope }),
  delete: (key, scope = 'run') => call('flow.state.delete', { key, scope })
}

function context (job) {
  const flow = flowContext(job)
  return {
    flow,
    job,
    id: job.id,
    attempt: job.attempt,
    log (message, fields, level = 'info') {
      const line = { type: 'log', message: String(message), level }
      if (fields) line.fields = fields
      send(line)
    },
    progress: (value) => call('progress', { value }),
    emit: (event, data) => call('emit', { event, data }),
    enqueue: (task, data, options) => call('enqueue', { task, data, options }),
    state: flow ? flowState : {
      get: (key) => call('state.get', { key }),
      set: (key, value) => call('state.set', { key, value })
    }
  }
}

function errorInfo (err) {
  if (err instanceof Error) {
    return { type: err.name, message: err.message, traceback: err.stack || '' }
  }
  return { type: 'Error', message: String(err), traceback: '' }
}

function run (handler) {
  send({ type: 'hello', protocol: 1, reuse: true })
  const jobs = []
  let busy = false
  const next = async () => {
    if (busy || jobs.length === 0) return
    busy = true
    const job = jobs.shift()
    try {
      const value = await handler(job, context(job))
      send({ type: 'result', value: value === undefined ? null : value })
    } catch (err) {
      send({ type: 'error', error: errorInfo(err), retry: !(err && err.fatal) })
    }
    busy = false
    next()
  }
  const lines = readline.createInterface({ input: process.stdin, terminal: false })
  lines.on('line', (line) => {
    if (!line.trim()) return
    const message = JSON.parse(line)
    if (message.type === 'job') {
      jobs.push(message)
      next()
    } else if (message.type === 'reply' && pending.has(message.id)) {
      const { resolve, reject } = pending.get(message.id)
      pending.delete(message.id)
      if ('error' in message) reject(new Error(message.error))
      else resolve(message.value)
    }
  })
  lines.on('close', () => process.exit(0))
}

module.exports = { run }
