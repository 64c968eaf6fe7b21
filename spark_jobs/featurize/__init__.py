"""Featurizing on the executors: photo bytes -> decoded pixels -> ResNet50 features + statistics.

Layers, each importing only those listed before it: ``images`` (fetch, decode), ``network`` (ModelSpec,
Keras ResNet50, preprocessing), ``quantization`` (int8 calibration set and quantizers), ``engines``
(TensorFlow / OpenVINO / ONNX Runtime), ``fidelity`` (the int8 gate) and ``models`` (``--weights``
resolution, per-worker featurizer), ``one_pass`` (the one Spark pass of a run).
"""
