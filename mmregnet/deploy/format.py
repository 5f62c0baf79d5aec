"""What an exported detector folder holds: names shared by the exporter and the runtime.

Torch-free, so that the light runtime (:mod:`mmregnet.deploy.runtime`) reads
a folder with numpy and onnxruntime only.

A folder of format 3 holds one ONNX graph, points in and mmdet3d's final
detections out (:data:`INPUT_NAME`, :data:`OUTPUT_NAMES`), and a JSON manifest
(:data:`MANIFEST_FILE`) naming the classes, the width of a point and the
settings frozen into the graph.
"""

#: The ONNX graph's file in an export folder.
GRAPH_FILE = 'detector.onnx'
#: The manifest's file in an export folder.
MANIFEST_FILE = 'detector.json'
#: The manifest's ``format`` field.
FORMAT = 'mmregnet-onnx-detector'
#: The manifest's ``version`` field: 3 is one graph from points to boxes.
FORMAT_VERSION = 3
#: The graph's input: one point cloud ``(N, C)`` float32.
INPUT_NAME = 'points'
#: The graph's outputs: ``(M, box_dim)`` float32 LiDAR boxes, ``(M,)`` float32 scores,
#: ``(M,)`` int64 labels, in the order mmdet3d's head returns them.
OUTPUT_NAMES = ('bboxes_3d', 'scores_3d', 'labels_3d')
