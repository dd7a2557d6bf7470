"""MSP reports: availability per device, location and business from the status transitions, and
alert statistics per business."""
