'use strict';
// A device on azure-iot-device over MQTT (argv[2] = "mqtt") or MQTT over WebSockets ("mqttws", port 443):
// twin get, reported patch, telemetry with properties; then it reports each desired patch and method call
// as they come, answering method "echo", until pytest writes "stop" on stdin.
const { Client, Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { emit, call, describeError, required, closeOnStop, runDevice } = require('./common');

const transportName = process.argv[2];
const Transport = { mqtt: Mqtt, mqttws: MqttWs }[transportName];

async function main() {
  const client = Client.fromConnectionString(required('DEVICE_CONNECTION_STRING'), Transport);
  client.on('error', (err) => emit({ event: 'clientError', error: describeError(err) }));
  // Registered before open: the SDK subscribes to $iothub/methods/POST/# as it connects.
  client.onDeviceMethod('echo', (request, response) => {
    emit({ event: 'method', name: request.methodName, payload: request.payload });
    response.send(200, { echo: request.payload, transport: transportName }, (err) => {
      if (err) emit({ event: 'methodResponseError', error: describeError(err) });
    });
  });
  await call((cb) => client.open(cb));
  emit({ event: 'connected' });

  const [twin] = await call((cb) => client.getTwin(cb));
  emit({ event: 'twin', desired: twin.properties.desired, reported: twin.properties.reported });
  // The SDK subscribes to desired patches for the first listener and then hands it the whole desired
  // document: once that came, patches will too.
  await new Promise((resolve) => {
    twin.on('properties.desired', (patch) => {
      emit({ event: 'desired', patch });
      resolve();
    });
  });

  await call((cb) => twin.properties.reported.update({ transport: transportName, sdk: 'node' }, cb));
  emit({ event: 'reported' });

  const message = new Message(JSON.stringify({ temperature: 21.5 }));
  message.properties.add('alert', 'high');
  message.messageId = `${transportName}-1`;
  message.contentType = 'application/json';
  message.contentEncoding = 'utf-8';
  await call((cb) => client.sendEvent(message, cb));
  emit({ event: 'sent', messageId: message.messageId });

  emit({ event: 'ready' });

  closeOnStop(client);
}

runDevice(main);
