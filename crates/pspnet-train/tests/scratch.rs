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
    let cases = [
        (Layout::Mmseg, 18, 12_788_534),
        (Layout::Semseg, 18, 16_906_582),
        (Layout::Mmseg, 50, 48_969_334),
        (Layout::Semseg, 50, 49_073_878),
        (Layout::Semseg, 101, 68_066_006),
    ];
    for (layout, depth, reference) in cases {
        let s = Scratch {
            layout,
            depth,
            width: 64,
            classes: 11,
            bins: vec![1, 2, 3, 6],
            pooling: Pooling::Average,
            output_stride: 8,
        };
        let (params, spec) = scratch(&s).unwrap();
        let config = PspNetConfig { backbone: spec.backbone.clone(), ppm: spec.ppm.clone() };
        let mut store = ParamStore::new(params.clone(), ConvOptions::default());
        let mut net = TrainPspNet::build(&config, &mut store.root(), true).unwrap();
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
        output_stride: 8,
    };
    assert!(scratch(&bad).is_err());
}
