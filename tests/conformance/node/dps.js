'use strict';
// DPS group enrollment with azure-iot-provisioning-device over MQTT and a symmetric key derived from the
// group key (as Microsoft's sample does), then a device connection to the assigned hub with that key.
const crypto = require('crypto');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvisioningMqtt } = require('azure-iot-provisioning-device-mqtt');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { emit, call, step, required } = require('./common');

async function main() {
  const registrationId = required('PROVISIONING_REGISTRATION_ID');
  const deviceKey = crypto.createHmac('SHA256', Buffer.from(required('PROVISIONING_GROUP_KEY'), 'base64'))
    .update(registrationId, 'utf8').digest('base64');
  const results = { derivedKey: deviceKey };
  const security = new SymmetricKeySecurityClient(registrationId, deviceKey);
  const provisioning = ProvisioningDeviceClient.create(required('PROVISIONING_HOST'), required('PROVISIONING_IDSCOPE'),
    new ProvisioningMqtt(), security);
  const registered = await step(results, 'register', async () => {
    const [result] = await call((cb) => provisioning.register(cb));
    return { assignedHub: result.assignedHub, deviceId: result.deviceId, status: result.status };
  });
  if (registered.ok) {
    await step(results, 'connectAndSend', async () => {
      const { assignedHub, deviceId } = registered.value;
      const client = Client.fromConnectionString(
        `HostName=${assignedHub};DeviceId=${deviceId};SharedAccessKey=${deviceKey}`, Mqtt);
      await call((cb) => client.open(cb));
      await call((cb) => client.sendEvent(new Message('provisioned'), cb));
      await call((cb) => client.close(cb));
      return true;
    });
  }
  emit(results);
}

main().catch((err) => {
  emit({ fatal: { name: err.constructor.name, message: String(err.message || err) } });
  process.exit(1);
});
