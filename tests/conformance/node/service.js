'use strict';
// The service side on azure-iothub (REST over HTTPS on the port-less HostName, i.e. 443): registry CRUD and
// list, twin update with etag, query, direct methods (to a Node device it starts, and to an offline one),
// jobs (twin update by query, device method with queryCondition "*") and job list, and the error class the
// SDK translates each refusal to. Prints one JSON object: step name -> {ok, value} or {ok: false, error}.
const { Registry, Client: ServiceClient, JobClient } = require('azure-iothub');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { emit, call, step, sleep, required } = require('./common');

const serviceString = required('SERVICE_CONNECTION_STRING');
const prefix = process.argv[2] || 'node';
const hostName = /HostName=([^;]+)/.exec(serviceString)[1];

async function waitForJob(jobs, jobId) {
  for (let i = 0; i < 300; i++) {
    const [job] = await call((cb) => jobs.getJob(jobId, cb));
    if (['completed', 'failed', 'cancelled'].includes(job.status)) return job;
    await sleep(200);
  }
  throw new Error(`job ${jobId} did not finish`);
}

async function main() {
  const registry = Registry.fromConnectionString(serviceString);
  const service = ServiceClient.fromConnectionString(serviceString);
  const jobs = JobClient.fromConnectionString(serviceString);
  const results = {};
  const offline = `${prefix}-offline`;
  const online = `${prefix}-online`;
  let device;
  let staleEtag;

  await step(results, 'create', async () => {
    const [created] = await call((cb) => registry.create({ deviceId: offline }, cb));
    return { deviceId: created.deviceId, status: created.status,
             hasKey: Boolean(created.authentication.symmetricKey.primaryKey) };
  });
  await step(results, 'createDuplicate', () => call((cb) => registry.create({ deviceId: offline }, cb)));
  await step(results, 'get', async () => (await call((cb) => registry.get(offline, cb)))[0].deviceId);
  await step(results, 'getUnknown', () => call((cb) => registry.get(`${prefix}-nobody`, cb)));
  await step(results, 'update', async () => {
    const [updated] = await call((cb) => registry.update({ deviceId: offline, status: 'disabled' }, cb));
    return updated.status;
  });
  await step(results, 'list', async () => (await call((cb) => registry.list(cb)))[0].map((d) => d.deviceId));

  await step(results, 'twinUpdate', async () => {
    const [twin] = await call((cb) => registry.getTwin(offline, cb));
    staleEtag = twin.etag;
    const [updated] = await call((cb) => twin.update({ tags: { site: prefix }, properties: { desired: { interval: 5 } } }, cb));
    return { etagChanged: updated.etag !== staleEtag, tags: updated.tags, interval: updated.properties.desired.interval };
  });
  await step(results, 'twinUpdateStaleEtag', () => call((cb) => registry.updateTwin(
    offline, { tags: { site: 'stale' } }, staleEtag, cb)));
  await step(results, 'query', async () => {
    const query = registry.createQuery(`SELECT * FROM devices WHERE tags.site = '${prefix}'`, 100);
    const [page] = await call((cb) => query.next(cb));
    return page.map((twin) => twin.deviceId);
  });

  await step(results, 'methodOffline', () => call((cb) => service.invokeDeviceMethod(
    offline, { methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 0 }, cb)));

  await step(results, 'methodOnline', async () => {
    const [created] = await call((cb) => registry.create({ deviceId: online }, cb));
    const key = created.authentication.symmetricKey.primaryKey;
    device = DeviceClient.fromConnectionString(`HostName=${hostName};DeviceId=${online};SharedAccessKey=${key}`, Mqtt);
    device.onDeviceMethod('ping', (request, response) => response.send(200, { pong: request.payload }, () => {}));
    await call((cb) => device.open(cb));
    // The method subscription completes after open: a call before it answers 404 (device not subscribed).
    for (let attempt = 0; ; attempt++) {
      try {
        const [result] = await call((cb) => service.invokeDeviceMethod(
          online, { methodName: 'ping', payload: { n: 1 }, responseTimeoutInSeconds: 30 }, cb));
        return result;
      } catch (err) {
        if (attempt >= 50 || !err.response || err.response.statusCode !== 404) throw err;
        await sleep(100);
      }
    }
  });

  const twinJob = `${prefix}-twin-job`;
  await step(results, 'scheduleTwinUpdate', async () => {
    const [job] = await call((cb) => jobs.scheduleTwinUpdate(twinJob, `deviceId IN ['${offline}', '${online}']`,
      { etag: '*', properties: { desired: { firmware: '2.0' } } }, new Date(), 60, cb));
    return { jobId: job.jobId, type: job.type };
  });
  await step(results, 'twinJobDone', async () => {
    const job = await waitForJob(jobs, twinJob);
    const [twin] = await call((cb) => registry.getTwin(offline, cb));
    return { status: job.status, firmware: twin.properties.desired.firmware };
  });

  const methodJob = `${prefix}-method-job`;
  await step(results, 'scheduleDeviceMethodStar', async () => {
    const [job] = await call((cb) => jobs.scheduleDeviceMethod(methodJob, '*',
      { methodName: 'ping', payload: { job: true }, responseTimeoutInSeconds: 10 }, new Date(), 60, cb));
    return { jobId: job.jobId, type: job.type, queryCondition: job.queryCondition };
  });
  await step(results, 'methodJobDone', async () => {
    const job = await waitForJob(jobs, methodJob);
    return { status: job.status, deviceJobStatistics: job.deviceJobStatistics };
  });

  await step(results, 'jobList', async () => {
    const [page] = await call((cb) => jobs.createQuery(undefined, undefined, 100).next(cb));
    return page.map((job) => ({ jobId: job.jobId, type: job.type, status: job.status }));
  });
  await step(results, 'jobListByType', async () => {
    const [page] = await call((cb) => jobs.createQuery('scheduleDeviceMethod', undefined, 100).next(cb));
    return page.map((job) => job.jobId);
  });

  if (device) await call((cb) => device.close(cb)).catch(() => {});
  await step(results, 'delete', () => call((cb) => registry.delete(offline, cb)).then(() => true));
  await step(results, 'getDeleted', () => call((cb) => registry.get(offline, cb)));
  emit(results);
}

main().catch((err) => {
  emit({ fatal: { name: err.constructor.name, message: String(err.message || err) } });
  process.exit(1);
});
