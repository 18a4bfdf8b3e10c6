"""Training the proxy: data generation from real photos, training, evaluation, ONNX export.

Never imported by the serving process (the gateway needs only service.model: network, criteria, checkpoint).
"""
