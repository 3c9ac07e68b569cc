"""Test doubles for the hub model's seams."""


class RecordingConnections:
    """Stands in for the MQTT front (hub.DeviceConnections): records what the hub pushes to devices."""

    def __init__(self):
        self.desired = []
        self.methods = []
        self.disconnected = []
        self.forgotten = []
        self.method_subscribers = None  # None: every device online is subscribed to methods

    def can_receive_method(self, device_id, method_name):
        return self.method_subscribers is None or device_id in self.method_subscribers

    def send_desired_patch(self, device_id, patch):
        self.desired.append((device_id, patch))

    def send_method_request(self, device_id, call):
        self.methods.append((device_id, call))

    def disconnect_device(self, device_id):
        self.disconnected.append(device_id)

    def forget_device(self, device_id):
        self.forgotten.append(device_id)


