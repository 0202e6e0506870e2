//! The ops MST++ trains through, checked against central finite differences in f64 and against
//! candle's own forward ops where candle has one (it lacks a backward for `layer_norm` and
//! `softmax_last_dim`, and runs a grouped convolution as one convolution per channel), and the
//! whole model's gradients on a tiny configuration.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use spectral_studio::models::mstpp::{Mstpp, MstppConfig};
use spectral_studio::nn::reflect_pad_to_multiple;
use spectral_studio::models::SpectralNet;
use spectral_studio::nn::depthwise::depthwise_conv2d;
use spectral_studio::nn::gelu::gelu_erf;
use spectral_studio::nn::norm::{l2_normalize_last, layer_norm_channels, layer_norm_channels_composed, softmax_last, L2_NORM_EPS, LAYER_NORM_EPS};

mod finite_diff;

use finite_diff::{gradient_error, random, variable_gradient_error, weighted_sum};

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    a.to_dtype(DType::F64).unwrap().sub(&b.to_dtype(DType::F64).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn depthwise_convolution_has_correct_gradients_and_equals_candles_grouped_convolution() {
    for (xs, k) in [([2, 3, 5, 7], 3), ([1, 4, 6, 4], 5), ([1, 2, 2, 3], 3)] {
        let (x, w) = (random(&xs, 1), random(&[xs[1], 1, k, k], 2));
        let err_x = gradient_error(&x, |x| weighted_sum(&depthwise_conv2d(x, &w)?, 3));
        let err_w = gradient_error(&w, |w| weighted_sum(&depthwise_conv2d(&x, w)?, 3));
        assert!(err_x < 1e-8 && err_w < 1e-8, "{xs:?} k {k}: {err_x:e} {err_w:e}");
        // candle's grouped convolution: the same forward and, through its per-group graph, the
        // same gradients (f32).
        let (x, w) = (Var::from_tensor(&x.to_dtype(DType::F32).unwrap()).unwrap(), Var::from_tensor(&w.to_dtype(DType::F32).unwrap()).unwrap());
        let ours = depthwise_conv2d(x.as_tensor(), w.as_tensor()).unwrap();
        let reference = x.as_tensor().conv2d(w.as_tensor(), k / 2, 1, 1, xs[1]).unwrap();
        assert!(max_diff(&ours, &reference) < 1e-5, "forward {xs:?}");
        let (g1, g2) = (weighted_sum(&ours, 4).unwrap().backward().unwrap(), weighted_sum(&reference, 4).unwrap().backward().unwrap());
        for v in [&x, &w] {
            assert!(max_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap()) < 1e-4, "gradient {xs:?}");
        }
    }
    assert!(depthwise_conv2d(&random(&[1, 3, 4, 4], 5), &random(&[2, 1, 3, 3], 6)).is_err(), "weights for another channel count");
}

#[test]
fn layer_norm_l2_normalisation_softmax_and_gelu_have_correct_gradients() {
    let x = random(&[2, 5, 3, 4], 10);
    let (w, b) = (random(&[5], 11), random(&[5], 12));
    let checks = [
        ("layer norm input", gradient_error(&x, |x| weighted_sum(&layer_norm_channels(x, &w, &b, LAYER_NORM_EPS)?, 13))),
        ("layer norm weight", gradient_error(&w, |w| weighted_sum(&layer_norm_channels(&x, w, &b, LAYER_NORM_EPS)?, 13))),
        ("layer norm bias", gradient_error(&b, |b| weighted_sum(&layer_norm_channels(&x, &w, b, LAYER_NORM_EPS)?, 13))),
        ("composed layer norm input", gradient_error(&x, |x| weighted_sum(&layer_norm_channels_composed(x, &w, &b, LAYER_NORM_EPS)?, 13))),
        ("l2 normalise", gradient_error(&x, |x| weighted_sum(&l2_normalize_last(x, L2_NORM_EPS)?, 14))),
        ("softmax", gradient_error(&(&x * 3.0).unwrap(), |x| weighted_sum(&softmax_last(x)?, 15))),
        ("gelu op", gradient_error(&(&x * 3.0).unwrap(), |x| weighted_sum(&gelu_erf(x)?, 16))),
        ("candle's gelu (erf)", gradient_error(&(&x * 3.0).unwrap(), |x| weighted_sum(&x.gelu_erf()?, 16))),
        ("reflect pad", gradient_error(&random(&[1, 2, 5, 3], 17), |x| weighted_sum(&reflect_pad_to_multiple(x, 4)?, 18))),
    ];
    // A row of zeros (a black patch through bias-free layers): a zero gradient, as PyTorch's, not NaN.
    let zero = Var::from_tensor(&Tensor::zeros((2, 5), DType::F64, &Device::Cpu).unwrap()).unwrap();
    let g = weighted_sum(&l2_normalize_last(zero.as_tensor(), L2_NORM_EPS).unwrap(), 19).unwrap().backward().unwrap();
    let g = g.get(zero.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    for (name, err) in checks {
        // GELU's derivative in candle uses 1/√(2π) to 6 digits: 4e-7 relative.
        assert!(err < 1e-6, "{name}: relative gradient error {err:e}");
    }
}

#[test]
fn the_normalisations_equal_candles_forward_ops() {
    let x = random(&[2, 6, 3, 5], 20).to_dtype(DType::F32).unwrap();
    let (w, b) = (random(&[6], 21).to_dtype(DType::F32).unwrap(), random(&[6], 22).to_dtype(DType::F32).unwrap());
    // candle's layer norm on the (n, h, w, c) layout MST++ uses, permuted back.
    let reference = candle_nn::ops::layer_norm(&x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap(), &w, &b, LAYER_NORM_EPS as f32).unwrap().permute((0, 3, 1, 2)).unwrap();
    assert!(max_diff(&layer_norm_channels(&x, &w, &b, LAYER_NORM_EPS).unwrap(), &reference) < 1e-5);
    assert!(max_diff(&layer_norm_channels_composed(&x, &w, &b, LAYER_NORM_EPS).unwrap(), &reference) < 1e-5);
    // The CPU op and the composition agree in every gradient, on a tensor wider than one work item.
    let big = random(&[2, 7, 40, 33], 24).to_dtype(DType::F32).unwrap();
    let (xv, wv, bv) = (Var::from_tensor(&big).unwrap(), Var::from_tensor(&w.narrow(0, 0, 6).unwrap().pad_with_same(0, 0, 1).unwrap()).unwrap(), Var::from_tensor(&b.narrow(0, 0, 6).unwrap().pad_with_same(0, 0, 1).unwrap()).unwrap());
    let run = |f: &dyn Fn(&Tensor, &Tensor, &Tensor, f64) -> candle_core::Result<Tensor>| {
        let y = f(xv.as_tensor(), wv.as_tensor(), bv.as_tensor(), LAYER_NORM_EPS).unwrap();
        let g = weighted_sum(&y, 25).unwrap().backward().unwrap();
        (y, [&xv, &wv, &bv].map(|v| g.get(v.as_tensor()).unwrap().clone()))
    };
    let (y_op, g_op) = run(&layer_norm_channels);
    let (y_ref, g_ref) = run(&layer_norm_channels_composed);
    assert!(max_diff(&y_op, &y_ref) < 1e-5);
    for (a, b) in g_op.iter().zip(&g_ref) {
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!(max_diff(a, b) < 1e-4 * scale.max(1.0), "{} vs scale {scale}", max_diff(a, b));
    }
    assert!(max_diff(&softmax_last(&x).unwrap(), &candle_nn::ops::softmax_last_dim(&x).unwrap()) < 1e-6);
    // GELU: the op against candle's, in f32 and f64, tails included.
    let wide = (random(&[3, 1000], 23) * 9.0).unwrap();
    // f32: the op's rational erf is within 4.5e-7 of erf, so x·Φ(x) within ~2e-6 at |x| ≤ 9.
    for (dtype, tol) in [(DType::F32, 3e-6), (DType::F64, 1e-9)] {
        let w = wide.to_dtype(dtype).unwrap();
        let err = max_diff(&gelu_erf(&w).unwrap(), &w.gelu_erf().unwrap());
        assert!(err < tol, "{dtype:?}: {err:e}");
    }
    let unit = l2_normalize_last(&x, L2_NORM_EPS).unwrap();
    let norms = unit.sqr().unwrap().sum(D::Minus1).unwrap();
    assert!(max_diff(&norms, &norms.ones_like().unwrap()) < 1e-5, "rows of unit length");
    // Reflect padding: padded row h + i is row h − 2 − i; too short a side is an error.
    let small = Tensor::arange(0f32, 5.0, &Device::Cpu).unwrap().reshape((1, 1, 1, 5)).unwrap().broadcast_as((1, 1, 5, 5)).unwrap().contiguous().unwrap();
    let padded = reflect_pad_to_multiple(&small, 8).unwrap();
    assert_eq!(padded.dims(), &[1, 1, 8, 8]);
    assert_eq!(padded.get(0).unwrap().get(0).unwrap().get(0).unwrap().to_vec1::<f32>().unwrap(), [0., 1., 2., 3., 4., 3., 2., 1.]);
    assert!(reflect_pad_to_multiple(&Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap(), 8).is_err());
}

fn tiny() -> MstppConfig {
    MstppConfig { in_channels: 3, out_channels: 4, n_feat: 4, stage: 2, levels: 2, num_blocks: vec![1, 1, 1] }
}

#[test]
fn mstpp_is_the_published_size_and_refuses_inconsistent_configs() {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    Mstpp::new(&MstppConfig::default(), vb).unwrap();
    let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    // The paper: 1.62 M parameters.
    assert!((1_600_000..1_640_000).contains(&params), "{params} parameters");
    let names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    for name in ["conv_in.weight", "body.0.encoder_layers.0.0.blocks.0.0.to_q.weight", "body.2.encoder_layers.1.0.blocks.0.1.norm.weight", "body.1.bottleneck.blocks.0.1.fn.net.2.weight", "body.0.decoder_layers.0.0.bias", "body.0.decoder_layers.1.2.blocks.0.0.pos_emb.2.weight", "body.2.mapping.weight", "conv_out.weight"] {
        assert!(names.iter().any(|n| n == name), "no tensor {name}");
    }
    // Trained from scratch it starts where the authors' code does: convolutions as PyTorch's
    // default (uniform in ±1/√fan-in, so σ = bound/√3), linear maps normal with σ 0.02.
    let data = vm.data().lock().unwrap();
    let stats = |name: &str| {
        let v: Vec<f32> = data[name].as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
        let std = (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        (max, std)
    };
    for (name, fan_in) in [("conv_in.weight", 27.0), ("body.0.embedding.weight", 279.0), ("body.1.encoder_layers.0.1.weight", 496.0), ("body.0.bottleneck.blocks.0.1.fn.net.2.weight", 9.0), ("body.2.bottleneck.blocks.0.1.fn.net.4.weight", 496.0)] {
        let (max, std) = stats(name);
        let bound = 1.0 / f64::sqrt(fan_in);
        // The bound as f32 may round up by an ulp (a draw once landed 8e-10 above the f64 bound).
        assert!(max <= bound * (1.0 + 1e-6) && (std / (bound / 3f64.sqrt()) - 1.0).abs() < 0.25, "{name}: max {max}, σ {std}, bound {bound}");
    }
    let (_, std) = stats("body.0.encoder_layers.0.0.blocks.0.0.to_q.weight");
    assert!((std / 0.02 - 1.0).abs() < 0.2, "to_q σ {std}");
    drop(data);
    let huge = MstppConfig { levels: usize::MAX, num_blocks: vec![], ..tiny() };
    for bad in [MstppConfig { out_channels: 5, ..tiny() }, MstppConfig { num_blocks: vec![1, 1], ..tiny() }, huge, MstppConfig { levels: 15, num_blocks: vec![1; 16], ..tiny() }, MstppConfig { num_blocks: vec![1, 1000, 1], ..tiny() }] {
        assert!(Mstpp::new(&bad, VarBuilder::zeros(DType::F32, &Device::Cpu)).is_err(), "{bad:?}");
    }
}

#[test]
fn mstpp_has_correct_gradients_and_keeps_odd_image_sizes() {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    let net = Mstpp::new(&tiny(), vb).unwrap();
    let x = random(&[1, 3, 8, 8], 30);
    let err = gradient_error(&x, |x| weighted_sum(&net.forward_t(x, None, true)?, 31));
    assert!(err < 1e-6, "input gradient: {err:e}");
    let odd = net.forward_t(&random(&[2, 3, 11, 9], 32), None, false).unwrap();
    assert_eq!(odd.dims(), &[2, 4, 11, 9]);
    let vars = vm.data().lock().unwrap().clone();
    for key in [
        "conv_in.weight",
        "body.0.encoder_layers.0.0.blocks.0.0.to_k.weight",
        "body.0.encoder_layers.0.0.blocks.0.0.rescale",
        "body.0.encoder_layers.1.0.blocks.0.0.proj.bias",
        "body.1.bottleneck.blocks.0.0.pos_emb.0.weight",
        "body.1.bottleneck.blocks.0.1.norm.weight",
        "body.1.decoder_layers.0.0.weight",
        "body.1.decoder_layers.1.1.weight",
        "body.1.decoder_layers.1.2.blocks.0.1.fn.net.2.weight",
        "body.1.mapping.weight",
        "conv_out.weight",
    ] {
        let var = vars.get(key).unwrap_or_else(|| panic!("no tensor {key}"));
        let err = variable_gradient_error(var, 5, || weighted_sum(&net.forward_t(&x, None, true).unwrap(), 33).unwrap());
        assert!(err < 1e-6, "{key}: relative gradient error {err:e}");
    }
}

#[test]
fn the_up_sampling_equals_a_transposed_convolution() {
    // A 2×2 stride-2 transposed convolution with bias, as MST++'s decoder has, against candle's
    // conv_transpose2d on the same weights (loaded by name into a one-stage model's decoder).
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    Mstpp::new(&MstppConfig { stage: 1, ..tiny() }, vb).unwrap();
    let vars = vm.data().lock().unwrap().clone();
    let (w, b) = (vars["body.0.decoder_layers.0.0.weight"].as_tensor().clone(), vars["body.0.decoder_layers.0.0.bias"].as_tensor().clone());
    let x = random(&[2, 16, 3, 5], 40).to_dtype(DType::F32).unwrap();
    let reference = x.conv_transpose2d(&w, 0, 0, 2, 1).unwrap().broadcast_add(&b.reshape((1, 8, 1, 1)).unwrap()).unwrap();
    let ours = spectral_studio::nn::layers::transposed_conv2x2(&x, &w, &b).unwrap();
    assert_eq!(ours.dims(), &[2, 8, 6, 10]);
    assert!(max_diff(&ours, &reference) < 1e-5, "{}", max_diff(&ours, &reference));
}
