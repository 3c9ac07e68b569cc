'use strict';
// Cloud-to-device messages from the service side on azure-iothub (AMQP over TLS to 5671 on the port-less
// HostName): one message per device named in argv (message id, correlation id, an application property,
// content type and encoding, ack "full"), then the feedback receiver until a record came for each, then a
// send to an unknown device. Prints one JSON object: step name -> {ok, value} or {ok: false, error}.
const { Client } = require('azure-iothub');
const { Message } = require('azure-iot-device'); // azure-iot-common's, which Client.send takes
const { emit, call, step, sleep, required } = require('./common');

const FEEDBACK_WAIT_MS = 60000; // generous for a loaded machine; never reached when things work
const CLOSE_WAIT_MS = 15000;
const [unknownDevice, ...devices] = process.argv.slice(2);

function outgoing(deviceId) {
  const message = new Message(JSON.stringify({ to: deviceId }));
  message.messageId = `${deviceId}-mid`;
  message.correlationId = `${deviceId}-cid`;
  message.properties.add('zone', 'north 3');
  message.contentType = 'application/json';
  message.contentEncoding = 'utf-8';
  message.ack = 'full';
  return message;
}

// Feedback records (each batch a JSON array) until one names each wanted message id, or the wait ends.
function feedback(receiver, wanted) {
  const records = [];
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      receiver.removeAllListeners('message');
      resolve(records);
    };
    const timer = setTimeout(done, FEEDBACK_WAIT_MS);
    receiver.on('message', (batch) => {
      records.push(...JSON.parse(batch.data.toString()));
      receiver.complete(batch, () => {});
      if (wanted.every((id) => records.some((r) => r.originalMessageId === id))) done();
    });
  });
}

async function main() {
  const client = Client.fromConnectionString(required('SERVICE_CONNECTION_STRING'));
  const results = {};
  await step(results, 'open', () => call((cb) => client.open(cb)).then(() => true));
  for (const deviceId of devices) {
    await step(results, `send:${deviceId}`, async () => {
      const [result] = await call((cb) => client.send(deviceId, outgoing(deviceId), cb));
      return result && result.constructor ? result.constructor.name : typeof result;
    });
  }
  await step(results, 'feedback', async () => {
    const [receiver] = await call((cb) => client.getFeedbackReceiver(cb));
    return feedback(receiver, devices.map((id) => `${id}-mid`));
  });
  await step(results, 'sendUnknown', () => call((cb) => client.send(unknownDevice, outgoing(unknownDevice), cb)));
  // The SDK closes the AMQP connection and waits for the hub's close in answer.
  await step(results, 'close', () => Promise.race([
    call((cb) => client.close(cb)).then(() => true),
    sleep(CLOSE_WAIT_MS).then(() => { throw new Error(`no answer to the AMQP close in ${CLOSE_WAIT_MS} ms`); }),
  ]));
  emit(results);
  process.exit(0); // an unanswered close leaves the socket open
}

main().catch((err) => {
  emit({ fatal: { name: err.constructor.name, message: String(err.message || err) } });
  process.exit(1);
});
