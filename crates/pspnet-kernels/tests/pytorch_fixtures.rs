//! Exact cases produced by PyTorch (`cargo xtask kernel-fixtures`, script in
//! xtask/python/kernel_fixtures.py): adaptive pooling, bilinear resize with
//! both corner conventions, max/avg pooling with ceil mode and padding.

mod common;

use std::collections::HashMap;

use pspnet_kernels::{
    PoolSpec, Tensor, adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d, resize_bilinear,
};

struct Case {
    params: HashMap<String, String>,
    x: Tensor,
    y: Vec<f32>,
    out: [usize; 4],
}

fn dims(s: &str) -> [usize; 4] {
    let v: Vec<usize> = s.split(',').map(|d| d.parse().unwrap()).collect();
    [v[0], v[1], v[2], v[3]]
}

fn floats(line: &str, tag: &str) -> Vec<f32> {
    let rest = line.strip_prefix(tag).unwrap_or_else(|| panic!("expected a `{tag}` line"));
    rest.split_whitespace().map(|v| v.parse().unwrap()).collect()
}

fn cases() -> Vec<Case> {
    let text = include_str!("fixtures/pytorch_cases.txt");
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    lines
        .chunks_exact(3)
        .map(|c| {
            let params: HashMap<String, String> = c[0]
                .split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            let x = common::tensor(dims(&params["in"]), &floats(c[1], "x "));
            let out = dims(&params["out"]);
            Case { x, y: floats(c[2], "y "), out, params }
        })
        .collect()
}

fn pool_spec(p: &HashMap<String, String>) -> PoolSpec {
    let n = |k: &str| p[k].parse::<usize>().unwrap();
    PoolSpec {
        kernel: [n("kernel"); 2],
        stride: [n("stride"); 2],
        padding: [n("padding"); 2],
        ceil_mode: p["ceil_mode"] == "true",
    }
}

#[test]
fn kernels_reproduce_pytorch() {
    let cases = cases();
    assert!(cases.len() >= 50, "fixture file holds {} cases", cases.len());
    for case in cases {
        let p = &case.params;
        let hw = [case.out[2], case.out[3]];
        let (got, tol) = match p["op"].as_str() {
            "adaptive_avg" => (adaptive_avg_pool2d(&case.x, hw), 2e-6),
            "adaptive_max" => (adaptive_max_pool2d(&case.x, hw), 0.0),
            "bilinear" => (resize_bilinear(&case.x, hw, p["align_corners"] == "true"), 1e-6),
            "max_pool" => (max_pool2d(&case.x, &pool_spec(p)), 0.0),
            "avg_pool" => (avg_pool2d(&case.x, &pool_spec(p), p["count_include_pad"] == "true"), 1e-6),
            op => panic!("unknown op {op}"),
        };
        let got = got.unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert_eq!(got.shape().dims(), case.out, "{p:?}");
        let want: Vec<f64> = case.y.iter().map(|&v| v as f64).collect();
        common::assert_close(got.as_slice(), &want, |i| tol * (1.0 + want[i].abs()), &format!("{p:?}"));
    }
}
