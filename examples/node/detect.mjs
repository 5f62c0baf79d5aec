// An exported mmregnet detector on a .bin point cloud with ONNX Runtime for Node.js.
//
//   npm install --ignore-scripts     # the CPU build for linux-x64 ships in the package
//   node detect.mjs DIR CLOUD.bin [--dims 5] [--use-dims 4] [--json]
//
// DIR is a folder of tools/deployment/export_detector.py: detector.onnx takes the
// points (N, C) float32 and gives mmdet3d's boxes, scores and labels; detector.json
// names the classes and C. Points holding NaN or inf are refused.
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import ort from 'onnxruntime-node';

const FORMAT = 'mmregnet-onnx-detector';
const VERSION = 3;
const FIELDS = ['x', 'y', 'z', 'x_size', 'y_size', 'z_size', 'yaw', 'vx', 'vy'];

function fail(message) {
  console.error(`detect.mjs: error: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = { positional: [], dims: null, useDims: null, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') args.json = true;
    else if (a === '--dims' || a === '--use-dims') {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v)) fail(`${a} must be an integer, got ${argv[i]}`);
      if (a === '--dims') args.dims = v; else args.useDims = v;
    } else args.positional.push(a);
  }
  if (args.positional.length !== 2) fail('usage: node detect.mjs DIR CLOUD.bin [--dims D] [--use-dims U] [--json]');
  return args;
}

function readManifest(dir) {
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(dir, 'detector.json'), 'utf8'));
  } catch (e) {
    fail(`${dir}: cannot read detector.json (${e.message})`);
  }
  if (manifest.format !== FORMAT || manifest.version !== VERSION) {
    fail(`${dir}: expected format '${FORMAT}' version ${VERSION}, got '${manifest.format}' ` +
         `version ${manifest.version}; export the detector again`);
  }
  return manifest;
}

function readCloud(file, dims, useDims) {
  const bytes = fs.readFileSync(file);
  if (bytes.length % (4 * dims)) {
    fail(`${file}: ${bytes.length} bytes is not a whole number of points of ${dims} float32 values`);
  }
  const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const n = all.length / dims;
  const points = new Float32Array(n * useDims);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < useDims; j++) {
      const v = all[i * dims + j];
      if (!Number.isFinite(v)) fail(`${file}: point ${i} holds NaN or inf; expected finite values`);
      points[i * useDims + j] = v;
    }
  }
  return { points, n };
}

const args = parseArgs(process.argv.slice(2));
const [dir, cloud] = args.positional;
const manifest = readManifest(dir);
const width = manifest.point_dims;
const dims = args.dims ?? width;
const useDims = args.useDims ?? width;
if (dims < width) fail(`the detector reads ${width} values per point, got --dims ${dims}`);
if (useDims !== width) fail(`the detector reads ${width} values per point, got --use-dims ${useDims}`);
const { points, n } = readCloud(cloud, dims, useDims);

const session = await ort.InferenceSession.create(path.join(dir, 'detector.onnx'), {
  executionProviders: ['cpu'],
});
const out = await session.run({ points: new ort.Tensor('float32', points, [n, useDims]) });
const boxDim = out.bboxes_3d.dims[1];
const boxes = out.bboxes_3d.data;
const scores = out.scores_3d.data;
const labels = out.labels_3d.data; // BigInt64Array
const detections = Array.from(scores, (score, i) => ({
  name: manifest.class_names[Number(labels[i])],
  label: Number(labels[i]),
  score,
  box: Array.from(boxes.subarray(i * boxDim, (i + 1) * boxDim)),
}));

if (args.json) {
  console.log(JSON.stringify({ count: detections.length, box_layout: FIELDS.slice(0, boxDim), detections }));
} else {
  console.log(`${manifest.config_name} (${manifest.precision}) on ${cloud}: ${n} points, ${detections.length} boxes`);
  console.log(['class', 'score', ...FIELDS.slice(0, boxDim)].map((s) => s.padStart(10)).join(''));
  for (const d of detections) {
    console.log([d.name.slice(0, 10).padStart(10), d.score.toFixed(3).padStart(10),
      ...d.box.map((v) => v.toFixed(2).padStart(10))].join(''));
  }
}
