"""configs/README.md and metafile.yml are generated, current, and every path in them exists."""
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'misc'))

import configs_index  # noqa: E402


def test_table_and_metafile_are_current():
    assert configs_index.main(['--check']) == 0


def test_upstream_lyft_names_map_to_files_that_exist():
    assert configs_index._upstream_name(
        'pointpillars_hv_regnet-400mf_fpn_sbn-all_2x8_2x_lyft-3d') == \
        'pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb2-2x_lyft-3d'
    rows = {r['name']: r for r in configs_index.config_rows()}
    lyft = rows['pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb2-2x_lyft-3d.py']['published']
    assert lyft['metrics'] == {'Private Score': 16.0, 'Public Score': 16.1}


def test_free_anchor_and_ssn_results_are_their_folders_own():
    assert configs_index._upstream_name('hv_ssn_regnet-400mf_secfpn_sbn-all_16xb1-2x_lyft-3d') \
        == 'ssn_hv_regnet-400mf_secfpn_sbn-all_16xb1-2x_lyft-3d'
    rows = {r['name']: r for r in configs_index.config_rows()}
    ssn = rows['ssn_hv_regnet-400mf_secfpn_sbn-all_16xb1-2x_lyft-3d.py']
    assert ssn['detector'] == 'SSN' and ssn['published']['folder'] == 'ssn'
    assert ssn['published']['metrics'] == {'Private Score': 17.9, 'Public Score': 18.0}
    free = rows['pointpillars_hv_regnet-400mf_fpn_head-free-anchor_sbn-all_8xb4-2x_nus-3d.py']
    assert free['detector'] == 'Free Anchor'
    assert free['published']['metrics'] == {'mAP': 48.3, 'NDS': 58.65}
    # free_anchor's metafile lists this regnet/ config as a baseline: regnet's own entry wins.
    plain = rows['pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py']
    assert plain['detector'] == 'PointPillars' and plain['published']['folder'] == 'regnet'


def test_every_metafile_config_exists():
    with open(os.path.join(ROOT, 'configs', 'regnet', 'metafile.yml')) as f:
        models = yaml.safe_load(f)['Models']
    assert len(models) == 19
    for model in models:
        assert os.path.isfile(os.path.join(ROOT, model['Config'])), model['Config']


def test_every_relative_link_in_the_readmes_resolves():
    for readme in ('README.md', 'configs/README.md'):
        path = os.path.join(ROOT, readme)
        with open(path) as f:
            text = f.read()
        links = re.findall(r'\]\(([^)#\s]+)\)', text)
        local = [link for link in links if '://' not in link]
        assert local, readme
        for link in local:
            assert os.path.exists(os.path.join(os.path.dirname(path), link)), (readme, link)


def test_readme_presets_block_is_mmregnet_list_output(capsys):
    from mmregnet.cli import main
    assert main(['list']) in (0, None)
    printed = capsys.readouterr().out.rstrip('\n')
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read()
    block = text.split('<!-- mmregnet-list:start -->')[1].split('<!-- mmregnet-list:end -->')[0]
    assert block.strip().strip('`').strip('\n') == printed
