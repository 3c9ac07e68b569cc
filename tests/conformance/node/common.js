'use strict';
// What the conformance scripts share: one JSON object per line on stdout (pytest reads them), callbacks as
// promises, and errors described by the class the SDK chose (its error translation is under test too).

function emit(object) {
  process.stdout.write(JSON.stringify(object) + '\n');
}

// Run `fn(callback)`; resolve with [result, response] as the SDK hands them to its callback.
function call(fn) {
  return new Promise((resolve, reject) => {
    fn((err, result, response) => (err ? reject(err) : resolve([result, response])));
  });
}

function describeError(err) {
  const response = err && err.response;
  return {
    name: err && err.constructor ? err.constructor.name : typeof err,
    message: String((err && err.message) || err),
    status: response ? response.statusCode : undefined,
    errorCodeHeader: response && response.headers ? response.headers['iothub-errorcode'] : undefined,
    body: err && err.responseBody !== undefined ? String(err.responseBody) : undefined,
    code: err && err.code,
  };
}

// Record each step's outcome under its name; a failing step never stops the others.
async function step(results, name, fn) {
  try {
    results[name] = { ok: true, value: await fn() };
  } catch (err) {
    results[name] = { ok: false, error: describeError(err) };
  }
  return results[name];
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function required(name) {
  const value = process.env[name];
  if (!value) {
    emit({ event: 'error', error: { name: 'Usage', message: `${name} is not set` } });
    process.exit(2);
  }
  return value;
}

// A device script runs until pytest writes "stop" on its stdin, then closes its client and exits 0.
function closeOnStop(client) {
  process.stdin.on('data', async (data) => {
    if (String(data).trim() === 'stop') {
      await call((cb) => client.close(cb));
      emit({ event: 'closed' });
      process.exit(0);
    }
  });
}

// Run a device script's main(); an error is reported as one JSON line and exit 1.
function runDevice(main) {
  main().catch((err) => {
    emit({ event: 'error', error: describeError(err) });
    process.exit(1);
  });
}

module.exports = { emit, call, describeError, step, sleep, required, closeOnStop, runDevice };
