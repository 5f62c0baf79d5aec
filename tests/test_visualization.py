"""The demo's bird's-eye views read the info file and tools/test.py's dumped predictions
under the project's unpickling policy: mmdet3d's boxes load, code in a pickle never runs."""
import mmengine
import numpy as np
import pytest
import torch
from mmdet3d.structures import Box3DMode, Det3DDataSample, LiDARInstance3DBoxes
from mmengine.evaluator import DumpResults
from mmengine.structures import InstanceData

from mmregnet.checkpoint.errors import ConversionError
from mmregnet.visualization import load_bev_samples


class RunsCode:
    """Unpickled without the policy, this would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def _dump_predictions(path, boxes):
    """What tools/test.py --out writes: mmengine's DumpResults of mmdet3d's data samples."""
    sample = Det3DDataSample(metainfo=dict(sample_idx=7, box_type_3d=LiDARInstance3DBoxes,
                                           box_mode_3d=Box3DMode.LIDAR, lidar_path='a.bin',
                                           num_pts_feats=5, axis_align_matrix=np.eye(4)))
    sample.pred_instances_3d = InstanceData(bboxes_3d=LiDARInstance3DBoxes(boxes),
                                            scores_3d=torch.tensor([0.9]),
                                            labels_3d=torch.tensor([2]))
    sample.pred_instances = InstanceData()
    dump = DumpResults(out_file_path=str(path))
    dump.process({}, [sample.to_dict()])
    dump.compute_metrics(dump.results)


def test_bev_samples_load_dumped_predictions_and_refuse_code(tmp_path):
    np.random.rand(10, 5).astype(np.float32).tofile(tmp_path / 'a.bin')
    gt = [1.0, -2.0, -1.0, 4.0, 2.0, 1.5, 0.3]
    mmengine.dump(dict(metainfo=dict(version='v1.0-mini'), data_list=[dict(
        sample_idx=7, lidar_points=dict(lidar_path='a.bin', num_pts_feats=5),
        instances=[dict(bbox_3d=gt, bbox_label_3d=0)])]), tmp_path / 'infos.pkl')
    boxes = torch.tensor([[2.0, 1.0, -1.0, 4.2, 1.9, 1.6, 0.1]])
    _dump_predictions(tmp_path / 'predictions.pkl', boxes)
    [sample] = load_bev_samples(str(tmp_path / 'infos.pkl'), str(tmp_path / 'predictions.pkl'),
                                str(tmp_path))
    assert sample.points.shape == (10, 5) and sample.gt_boxes.tolist() == [gt]
    assert np.allclose(sample.pred_boxes, boxes.numpy()) and np.allclose(sample.pred_scores, 0.9)

    mmengine.dump([dict(sample_idx=7, pred_instances_3d=RunsCode(tmp_path / 'ran'))],
                  tmp_path / 'hostile.pkl')
    with pytest.raises(ConversionError, match=r'refusing to load .*hostile\.pkl.*open'):
        load_bev_samples(str(tmp_path / 'infos.pkl'), str(tmp_path / 'hostile.pkl'),
                         str(tmp_path))
    assert not (tmp_path / 'ran').exists()
