//! Networks from scratch: the shapes `scratch` lays out build every part of
//! the training and the inference network with nothing missing or left
//! over, and hold as many learned parameters as the PyTorch reference
//! models of the same layout and depth (xtask/python/reference.py, 11
//! classes, counted by `sum(p.numel() for p in model.parameters())`).

use pspnet_kernels::ConvOptions;
use pspnet_model::{Layout, PspNet, PspNetConfig, TrainPspNet};
use pspnet_nn::ParamStore;
use pspnet_nn::train::{State, Trainable};
use pspnet_ppm::Pooling;
use pspnet_train::{Scratch, scratch};

#[test]
fn scratch_networks_build_and_match_the_references_parameter_counts() {
    // Without reduction (by hand): the four 128x512 1x1 reductions and their
    // batch-norms (263,168) go, and the 3x3 head takes 2560 channels instead
    // of 1024 (+1,769,472).
    let cases = [
        (Layout::Mmseg, 18, true, 12_788_534),
        (Layout::Semseg, 18, true, 16_906_582),
        (Layout::Mmseg, 50, true, 48_969_334),
        (Layout::Semseg, 50, true, 49_073_878),
        (Layout::Semseg, 101, true, 68_066_006),
        (Layout::Mmseg, 18, false, 14_294_838),
    ];
    for (layout, depth, reduction, reference) in cases {
        let s = Scratch {
            layout,
            depth,
            width: 64,
            classes: 11,
            bins: vec![1, 2, 3, 6],
            pooling: Pooling::Average,
            reduction,
            output_stride: 8,
        };
        let (params, spec) = scratch(&s).unwrap();
        let config = PspNetConfig { backbone: spec.backbone.clone(), ppm: spec.ppm.clone() };
        let mut store = ParamStore::new(params.clone(), ConvOptions::default());
        let mut net = TrainPspNet::build(&config, &mut store.root()).unwrap();
        assert!(store.finish().is_empty(), "{layout:?} {depth}: training network");
        let mut store = ParamStore::new(params, ConvOptions::default());
        PspNet::build(config, &mut store.root()).unwrap();
        assert!(store.finish().is_empty(), "{layout:?} {depth}: inference network");
        let mut learned = 0;
        net.visit_state("", &mut |_, state| {
            if let State::Learned(p) = state {
                learned += p.value.len();
            }
        });
        assert_eq!(learned, reference, "{layout:?} {depth}");
    }
    let bad = Scratch {
        layout: Layout::Native,
        depth: 18,
        width: 64,
        classes: 2,
        bins: vec![1],
        pooling: Pooling::Max,
        reduction: true,
        output_stride: 8,
    };
    assert!(scratch(&bad).is_err());
}
