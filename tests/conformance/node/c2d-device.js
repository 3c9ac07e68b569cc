'use strict';
// A device on azure-iot-device over MQTT that reports each cloud-to-device message it gets (body, system
// and application properties) and completes it, until pytest writes "stop" on stdin.
const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { emit, call, describeError, required, closeOnStop, runDevice } = require('./common');

async function main() {
  const client = Client.fromConnectionString(required('DEVICE_CONNECTION_STRING'), Mqtt);
  client.on('error', (err) => emit({ event: 'clientError', error: describeError(err) }));
  client.on('message', (message) => {
    emit({
      event: 'message', body: message.data.toString(), messageId: message.messageId,
      correlationId: message.correlationId, contentType: message.contentType,
      contentEncoding: message.contentEncoding,
      properties: Object.fromEntries(message.properties.propertyList.map((p) => [p.key, p.value])),
    });
    client.complete(message, (err) => emit(err ? { event: 'completeError', error: describeError(err) }
                                                : { event: 'completed', messageId: message.messageId }));
  });
  await call((cb) => client.open(cb));
  emit({ event: 'connected' });

  closeOnStop(client);
}

runDevice(main);
