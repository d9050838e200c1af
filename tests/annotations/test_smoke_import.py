def test_demo_audit_imports_all_traces(demo_audit):
    # given the demo file (60 traces, each with given steps)
    # then every trace is stored with both segmentations
    assert demo_audit.traces.count() == 60
    assert demo_audit.steps.filter(segmentation="given").count() > 60
    assert demo_audit.steps.filter(segmentation="sentences").count() > 60
