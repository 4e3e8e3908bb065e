//! The optimiser and schedule against torch.optim.SGD with LambdaLR (two
//! parameter groups, momentum, weight decay, poly decay with warm-up) on a
//! fixed sequence of gradients: tests/fixtures/sgd.json, written by
//! xtask/python/optimizer_reference.py.

use pspnet_train::{PolySchedule, Sgd};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn matches_torch_sgd_step_by_step() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sgd.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let s = &fixture["schedule"];
    let schedule = PolySchedule {
        base: s["base"].as_f64().unwrap(),
        iters: s["iters"].as_u64().unwrap() as usize,
        power: s["power"].as_f64().unwrap(),
        warmup: s["warmup"].as_u64().unwrap() as usize,
    };
    let groups: Vec<u64> = fixture["groups"].as_array().unwrap().iter().map(|g| g.as_u64().unwrap()).collect();
    let mut params: Vec<Vec<f32>> = fixture["initial"].as_array().unwrap().iter().map(floats).collect();
    let (momentum, decay) =
        (fixture["momentum"].as_f64().unwrap() as f32, fixture["weight_decay"].as_f64().unwrap() as f32);
    let mut sgd = Sgd::new(params.len(), momentum, decay);
    for (i, step) in fixture["steps"].as_array().unwrap().iter().enumerate() {
        let rates = floats(&step["rates"]);
        let backbone = schedule.rate(i);
        assert!((backbone - rates[0] as f64).abs() <= 1e-9, "step {i}: rate {backbone} vs {}", rates[0]);
        assert!((10.0 * backbone - rates[1] as f64).abs() <= 1e-8, "step {i}: head rate");
        for (p, (grad, &group)) in step["grads"].as_array().unwrap().iter().zip(&groups).enumerate() {
            let lr = (backbone * if group == 0 { 1.0 } else { 10.0 }) as f32;
            sgd.step(p, &mut params[p], &floats(grad), lr);
        }
        for (p, want) in step["params"].as_array().unwrap().iter().enumerate() {
            for (j, (&got, want)) in params[p].iter().zip(floats(want)).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "step {i}, parameter {p}[{j}]: {got} vs {want}"
                );
            }
        }
    }
    assert!(sgd.buffers().iter().all(Option::is_some));
}
