//! Every op the learned models train through, checked against central finite differences in
//! f64 (and the custom convolution also against candle's reference conv2d in f32).
//!
//! Why: candle 0.11 on the CPU has silent gradient traps — `max_pool2d`'s backward is 1/k² of
//! the true gradient, `upsample_nearest2d`'s backward overwrites accumulated gradients, and
//! `LayerNorm`/`RmsNorm`/`softmax_last_dim` have no backward at all, and `conv2d`'s backward
//! fails at stride 2 when rows and columns need different output padding. The models avoid those ops;
//! these tests make sure what they use instead is right.

use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use spectral_studio::models::basisnet::{BasisNet, BasisNetConfig};
use spectral_studio::nn::batchnorm::BatchNorm2d;
use spectral_studio::nn::conv::{conv2d, conv2d_bias_act, set_direct_enabled, Conv};
use spectral_studio::nn::conv_bn::conv_bn_act_train;
use spectral_studio::nn::layers::{channel_dropout, leaky_relu, max_pool2x2};
use spectral_studio::models::mscnn::{Mscnn, MscnnConfig};
use spectral_studio::nn::pixel_scale::scale_pixels;
use spectral_studio::nn::shuffle::shuffle_concat;
use spectral_studio::models::SpectralNet;
use spectral_studio::nn::pad_to_multiple;
use spectral_studio::spectral::camera::CameraResponse;
use spectral_studio::train::{loss_fn, Loss};

mod finite_diff;

use finite_diff::{gradient_error, random, variable_gradient_error, weighted_sum, EPS};

#[test]
fn conv_op_gradients_match_finite_differences() {
    for (xs, ws, pad, stride) in [
        ([2, 3, 5, 6], [4, 3, 3, 3], 1, 1),
        ([1, 2, 7, 5], [3, 2, 3, 3], 0, 2),
        ([2, 4, 4, 4], [2, 4, 1, 1], 0, 1),
        ([1, 2, 6, 7], [2, 2, 5, 5], 2, 2),
    ] {
        let (x, w) = (random(&xs, 1), random(&ws, 2));
        let err_x = gradient_error(&x, |x| weighted_sum(&conv2d(x, &w, pad, stride)?, 3));
        let err_w = gradient_error(&w, |w| weighted_sum(&conv2d(&x, w, pad, stride)?, 3));
        assert!(err_x < 1e-7 && err_w < 1e-7, "{xs:?}*{ws:?} pad {pad} stride {stride}: {err_x:e} {err_w:e}");
    }
}

#[test]
fn conv_op_agrees_with_candles_reference_conv_in_f32() {
    for (xs, ws, pad, stride) in [
        ([3, 5, 17, 23], [7, 5, 3, 3], 1, 1),
        // candle's own backward fails when rows and columns need different output padding
        // (e.g. 16×9 at stride 2: a shape mismatch), so the reference uses a shape it can do.
        ([2, 3, 15, 9], [4, 3, 3, 3], 0, 2),
        ([2, 8, 11, 13], [5, 8, 1, 1], 0, 1),
        ([1, 4, 9, 10], [3, 4, 5, 5], 2, 1),
    ] {
        let x = Var::from_tensor(&random(&xs, 4).to_dtype(DType::F32).unwrap()).unwrap();
        let w = Var::from_tensor(&random(&ws, 5).to_dtype(DType::F32).unwrap()).unwrap();
        let ours = conv2d(x.as_tensor(), w.as_tensor(), pad, stride).unwrap();
        let reference = x.as_tensor().conv2d(w.as_tensor(), pad, stride, 1, 1).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        let diff = |a: &Tensor, b: &Tensor| a.sub(b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff(&ours, &reference) < 1e-4, "forward {xs:?}");
        let g_ours = weighted_sum(&ours, 6).unwrap().backward().unwrap();
        let g_ref = weighted_sum(&reference, 6).unwrap().backward().unwrap();
        for v in [&x, &w] {
            let (a, b) = (g_ours.get(v.as_tensor()).unwrap(), g_ref.get(v.as_tensor()).unwrap());
            assert!(diff(a, b) < 1e-3, "gradient {xs:?}*{ws:?}: {}", diff(a, b));
        }
    }
}

/// The direct kernel (on by default for "same" stride-1 f32 convolutions on AVX2 CPUs) and
/// the im2col + GEMM path give the same forward pass and gradients; the fused inference op
/// equals convolution, bias and LeakyReLU done apart. Only this test switches the path.
#[test]
fn direct_and_im2col_convolutions_agree_and_the_fused_op_equals_its_parts() {
    let diff = |a: &Tensor, b: &Tensor| a.sub(b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    for (xs, ws, pad) in [([2, 5, 13, 31], [6, 5, 3, 3], 1), ([1, 16, 8, 24], [16, 16, 3, 3], 1), ([3, 7, 5, 9], [31, 7, 1, 1], 0), ([1, 3, 6, 40], [5, 3, 5, 5], 2)] {
        let x = Var::from_tensor(&random(&xs, 21).to_dtype(DType::F32).unwrap()).unwrap();
        let w = Var::from_tensor(&random(&ws, 22).to_dtype(DType::F32).unwrap()).unwrap();
        let run = |direct: bool| {
            set_direct_enabled(direct);
            let y = conv2d(x.as_tensor(), w.as_tensor(), pad, 1).unwrap();
            let g = weighted_sum(&y, 23).unwrap().backward().unwrap();
            (y, g.get(x.as_tensor()).unwrap().clone(), g.get(w.as_tensor()).unwrap().clone())
        };
        let (y_direct, dx_direct, dw_direct) = run(true);
        let (y_im2col, dx_im2col, dw_im2col) = run(false);
        set_direct_enabled(true);
        assert!(diff(&y_direct, &y_im2col) < 1e-4, "forward {xs:?}*{ws:?}");
        assert!(diff(&dx_direct, &dx_im2col) < 1e-4, "input gradient {xs:?}*{ws:?}");
        assert!(diff(&dw_direct, &dw_im2col) < 1e-3, "weight gradient {xs:?}*{ws:?}");

        let bias = random(&[ws[0]], 24).to_dtype(DType::F32).unwrap();
        let fused = conv2d_bias_act(x.as_tensor(), w.as_tensor(), &bias, pad, Some(0.2)).unwrap();
        let parts = leaky_relu(&y_im2col.broadcast_add(&bias.reshape((1, (), 1, 1)).unwrap()).unwrap()).unwrap();
        assert!(diff(&fused, &parts) < 1e-4, "fused {xs:?}*{ws:?}: {}", diff(&fused, &parts));
    }
}

/// An f64 batch norm over 3 channels with γ = (0.5, −1.5, 2) and β = (0.1, 0, −0.3), and its
/// variables by name (`weight`, `bias`, `running_mean`, `running_var`).
fn batch_norm_3_channels() -> (BatchNorm2d, std::collections::HashMap<String, Var>) {
    let vm = VarMap::new();
    let config = candle_nn::BatchNormConfig { eps: 1e-5, remove_mean: true, affine: true, momentum: 0.1 };
    let bn = BatchNorm2d::new(3, config, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
    let vars = vm.data().lock().unwrap().clone();
    vars["weight"].set(&Tensor::new(&[0.5f64, -1.5, 2.0], &Device::Cpu).unwrap()).unwrap();
    vars["bias"].set(&Tensor::new(&[0.1f64, 0.0, -0.3], &Device::Cpu).unwrap()).unwrap();
    (bn, vars)
}

/// The training-mode batch norm op (one pass forward, closed-form backward) against finite
/// differences, for the input and for γ and β.
#[test]
fn batch_norm_training_gradients_match_finite_differences() {
    let (bn, vars) = batch_norm_3_channels();
    let x = random(&[2, 3, 4, 5], 30).affine(2.0, 0.5).unwrap();
    let err_x = gradient_error(&x, |x| weighted_sum(&bn.forward_t(x, true)?, 31));
    assert!(err_x < 1e-6, "input: relative gradient error {err_x:e}");
    for name in ["weight", "bias"] {
        let var = &vars[name];
        let grads = weighted_sum(&bn.forward_t(&x, true).unwrap(), 31).unwrap().backward().unwrap();
        let analytic: Vec<f64> = grads.get(var.as_tensor()).unwrap().to_vec1().unwrap();
        let base: Vec<f64> = var.as_tensor().to_vec1().unwrap();
        for i in 0..base.len() {
            let eval = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::new(v.as_slice(), &Device::Cpu).unwrap()).unwrap();
                let out = weighted_sum(&bn.forward_t(&x, true).unwrap(), 31).unwrap().to_scalar::<f64>().unwrap();
                var.set(&Tensor::new(base.as_slice(), &Device::Cpu).unwrap()).unwrap();
                out
            };
            let numeric = (eval(EPS) - eval(-EPS)) / (2.0 * EPS);
            assert!((numeric - analytic[i]).abs() < 1e-6 * numeric.abs().max(1.0), "{name}[{i}]: {} vs {numeric}", analytic[i]);
        }
    }
}

#[test]
fn batch_norm_with_leaky_relu_equals_its_parts_in_value_and_gradient() {
    let (bn, vars) = batch_norm_3_channels();
    let x = random(&[2, 3, 4, 5], 40).affine(2.0, 0.5).unwrap();
    let fused = |x: &Tensor| bn.forward_act_t(x, true, Some(0.2));
    let parts = |x: &Tensor| leaky_relu(&bn.forward_t(x, true)?);
    let (a, b) = (fused(&x).unwrap(), parts(&x).unwrap());
    let diff = |a: &Tensor, b: &Tensor| a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
    assert!(diff(&a, &b) < 1e-12, "values differ by {:e}", diff(&a, &b));
    assert!(a.flatten_all().unwrap().min(0).unwrap().to_scalar::<f64>().unwrap() < 0.0, "some outputs are on the activation's negative side");
    let err = gradient_error(&x, |x| weighted_sum(&fused(x)?, 41));
    assert!(err < 1e-6, "input: relative gradient error {err:e}");
    // γ and β get the same gradients as through the two separate ops.
    let (gf, gp) = (weighted_sum(&a, 41).unwrap().backward().unwrap(), weighted_sum(&b, 41).unwrap().backward().unwrap());
    for name in ["weight", "bias"] {
        let t = vars[name].as_tensor();
        let d = diff(gf.get(t).unwrap(), gp.get(t).unwrap());
        assert!(d < 1e-10, "{name}: gradients differ by {d:e}");
    }
    assert!(bn.forward_act_t(&x, true, Some(1.5)).is_err(), "a slope outside [0, 1) is refused");
}

#[test]
fn shuffle_concat_equals_candles_ops_and_has_correct_gradients() {
    let skip = random(&[2, 3, 4, 6], 50);
    let deep = random(&[2, 8, 2, 3], 51);
    let reference = |s: &Tensor, d: &Tensor| Tensor::cat(&[s, &candle_nn::ops::pixel_shuffle(d, 2)?], 1);
    for dtype in [DType::F64, DType::F32] {
        let (s, d) = (skip.to_dtype(dtype).unwrap(), deep.to_dtype(dtype).unwrap());
        let ours = shuffle_concat(&s, &d).unwrap();
        assert_eq!(ours.dims(), &[2, 5, 4, 6]);
        let want = reference(&s, &d).unwrap();
        assert_eq!(ours.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap(), want.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap(), "{dtype:?}: values");
    }
    let err_skip = gradient_error(&skip, |s| weighted_sum(&shuffle_concat(s, &deep)?, 52));
    let err_deep = gradient_error(&deep, |d| weighted_sum(&shuffle_concat(&skip, d)?, 53));
    assert!(err_skip < 1e-7 && err_deep < 1e-7, "relative gradient errors {err_skip:e} (skip), {err_deep:e} (deep)");
    assert!(shuffle_concat(&skip, &random(&[2, 8, 3, 3], 54)).is_err(), "a deep map of the wrong size is refused");
    assert!(shuffle_concat(&skip, &random(&[2, 6, 2, 3], 55)).is_err(), "channels not a multiple of 4 are refused");
}

#[test]
fn conv_layer_bias_gradient_is_right() {
    let vm = VarMap::new();
    let conv = Conv::new(2, 3, 3, 1, true, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
    let x = random(&[2, 2, 4, 5], 7);
    assert!(gradient_error(&x, |x| weighted_sum(&conv.forward(x)?, 8)) < 1e-7);
    let bias = vm.data().lock().unwrap().get("bias").unwrap().as_tensor().clone();
    let g = weighted_sum(&conv.forward(&x).unwrap(), 8).unwrap().backward().unwrap();
    // d/db Σ y·r = Σ over batch and pixels of r, per output channel.
    let r = random(&[2, 3, 4, 5], 8);
    let expected = r.sum(0).unwrap().sum(D::Minus1).unwrap().sum(D::Minus1).unwrap();
    let got = g.get(&bias).unwrap();
    assert!(got.sub(&expected).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap() < 1e-9);
}

#[test]
fn max_pool_routes_the_whole_gradient_to_the_maximum() {
    let x = random(&[2, 3, 6, 8], 9);
    assert!(gradient_error(&x, |x| weighted_sum(&max_pool2x2(x)?, 10)) < 1e-7);
    // And the value is the window maximum.
    let y = max_pool2x2(&x).unwrap();
    let v: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let window_max = [v[0], v[1], v[8], v[9]].into_iter().fold(f64::MIN, f64::max);
    assert_eq!(y.flatten_all().unwrap().to_vec1::<f64>().unwrap()[0], window_max);
    assert!(max_pool2x2(&random(&[1, 1, 5, 4], 1)).is_err(), "odd sides are refused");
    // A tie sends the gradient to the first maximum in row-major order only, as PyTorch does.
    let tied = Var::from_tensor(&Tensor::new(&[[[[1.0f32, 1.0], [0.5, 1.0]]]], &Device::Cpu).unwrap()).unwrap();
    let g = max_pool2x2(tied.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    let dx: Vec<f32> = g.get(tied.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(dx, vec![1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn activations_reshapes_and_losses_have_correct_gradients() {
    let x = random(&[2, 8, 4, 6], 11);
    let checks: Vec<(&str, f64)> = vec![
        ("leaky_relu", gradient_error(&x, |x| weighted_sum(&leaky_relu(x)?, 12))),
        ("pixel_shuffle", gradient_error(&x, |x| weighted_sum(&candle_nn::ops::pixel_shuffle(x, 2)?, 13))),
        ("pixel_unshuffle", gradient_error(&x, |x| weighted_sum(&candle_nn::ops::pixel_unshuffle(x, 2)?, 14))),
        ("concat", gradient_error(&x, |x| weighted_sum(&Tensor::cat(&[x, &(x * 2.0)?.narrow(1, 0, 3)?], 1)?, 15))),
        ("pad_to_multiple", gradient_error(&random(&[1, 2, 5, 3], 16), |x| weighted_sum(&pad_to_multiple(x, 4)?, 17))),
        ("narrow crop", gradient_error(&x, |x| weighted_sum(&x.narrow(2, 0, 3)?.narrow(3, 1, 4)?, 18))),
        ("basis matmul", gradient_error(&random(&[2, 3, 10], 19), |w| weighted_sum(&random(&[5, 3], 20).broadcast_left(2)?.matmul(w)?, 21))),
    ];
    let target = (random(&[2, 8, 4, 6], 22).abs().unwrap() + 0.1).unwrap();
    let pred = random(&[2, 8, 4, 6], 23);
    let l1 = gradient_error(&pred, |p| loss_fn(Loss::L1, p, &target));
    let mrae = gradient_error(&pred, |p| loss_fn(Loss::Mrae, p, &target));
    let mixed = gradient_error(&pred, |p| loss_fn(Loss::MraeL1, p, &target));
    let squared = gradient_error(&pred, |p| loss_fn(Loss::MraeRmse, p, &target));
    for (name, err) in checks.into_iter().chain([("l1 loss", l1), ("mrae loss", mrae), ("mrae+l1 loss", mixed), ("mrae+rmse loss", squared)]) {
        assert!(err < 1e-6, "{name}: relative gradient error {err:e}");
    }
}

#[test]
fn channel_dropout_gradient_is_its_mask() {
    let x = Var::from_tensor(&(random(&[4, 6, 3, 3], 24).abs().unwrap() + 0.5).unwrap()).unwrap();
    let y = channel_dropout(x.as_tensor(), 0.5, true).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let g = g.get(x.as_tensor()).unwrap();
    // Each (sample, channel) plane is either all zero or all scaled by 2, in value and gradient.
    let (yv, gv): (Vec<f64>, Vec<f64>) = (y.flatten_all().unwrap().to_vec1().unwrap(), g.flatten_all().unwrap().to_vec1().unwrap());
    let xv: Vec<f64> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    for plane in 0..24 {
        let idx = plane * 9..(plane + 1) * 9;
        let scale = gv[idx.start];
        assert!(scale == 0.0 || scale == 2.0);
        for i in idx {
            assert_eq!(gv[i], scale);
            assert!((yv[i] - scale * xv[i]).abs() < 1e-12);
        }
    }
    let dropped = (0..24).filter(|p| gv[p * 9] == 0.0).count();
    assert!((4..=20).contains(&dropped), "dropped {dropped} of 24 planes at p = 0.5");
    let eval = channel_dropout(x.as_tensor(), 0.5, false).unwrap();
    assert_eq!(eval.flatten_all().unwrap().to_vec1::<f64>().unwrap(), xv);
}

#[test]
fn batch_norm_in_training_mode_has_correct_gradients() {
    let vm = VarMap::new();
    let bn = candle_nn::batch_norm(3, candle_nn::BatchNormConfig::default(), VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
    let x = random(&[4, 3, 3, 2], 25);
    let err = gradient_error(&x, |x| weighted_sum(&candle_core::ModuleT::forward_t(&bn, x, true)?, 26));
    assert!(err < 1e-6, "batch norm: {err:e}");
}

/// The whole networks in training mode (batch statistics, no dropout): gradients with respect
/// to the input and to one weight of each kind.
#[test]
fn whole_models_have_correct_gradients() {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    let mscnn = Mscnn::new(&MscnnConfig { bands: 4, width: 4, depth: 2, dropout: 0.0, linear_prior: false, intensity_normalised: false, camera_aware: false, camera_coords: 6, illumination_cues: false }, vb.pp("m")).unwrap();
    let basis = BasisNet::new(&BasisNetConfig { bands: 4, basis: 3, width: 4, depth: 1, dropout: 0.0, linear_prior: false, intensity_normalised: false, camera_aware: false, camera_coords: 6, illumination_cues: false, gamut_cues: false }, vb.pp("b")).unwrap();
    let residual = Mscnn::new(&MscnnConfig { bands: 4, width: 4, depth: 1, dropout: 0.0, linear_prior: true, intensity_normalised: false, camera_aware: false, camera_coords: 6, illumination_cues: false }, vb.pp("r")).unwrap();
    // Intensity normalisation divides by each pixel's R+G+B: it is tested on positive RGB.
    let normalised = BasisNet::new(&BasisNetConfig { bands: 4, basis: 3, width: 4, depth: 1, dropout: 0.0, linear_prior: false, intensity_normalised: true, camera_aware: false, camera_coords: 6, illumination_cues: false, gamut_cues: false }, vb.pp("n")).unwrap();
    // Camera-aware networks (31 bands, the cameras' grid): told a Canon and a Nikon image.
    let aware_mscnn = Mscnn::new(&MscnnConfig { bands: 31, width: 4, depth: 1, dropout: 0.0, linear_prior: true, intensity_normalised: true, camera_aware: true, camera_coords: 4, illumination_cues: true }, vb.pp("ca")).unwrap();
    let aware_basis = BasisNet::new(&BasisNetConfig { bands: 31, basis: 3, width: 4, depth: 1, dropout: 0.0, linear_prior: true, intensity_normalised: true, camera_aware: true, camera_coords: 4, illumination_cues: true, gamut_cues: true }, vb.pp("cb")).unwrap();
    let moment = Tensor::from_vec((0..31 * 31).map(|k| (-(((k / 31) as f64 - (k % 31) as f64) / 6.0).powi(2)).exp() * 0.1 + 0.02).collect::<Vec<f64>>(), (31, 31), &Device::Cpu).unwrap();
    for prefix in ["ca", "cb"] {
        vm.data().lock().unwrap().get(&format!("{prefix}.wiener.moment")).unwrap().set(&moment).unwrap();
    }
    let grid = spectral_studio::default_wavelengths();
    let cams: Vec<_> = ["canon", "nikon"].iter().map(|n| CameraResponse::builtin(n).unwrap().on_grid(&grid).unwrap()).collect();
    // Two pictures' cues: grey world, bright, and the three gamut cues (the mscnn reads the first two).
    let cues = [
        [0.3, 0.35, 0.35, 0.4, 0.35, 0.25, 0.7, 0.2, 0.1, 0.2, 0.65, 0.15, 0.1, 0.25, 0.65],
        [0.25, 0.4, 0.35, 0.3, 0.3, 0.4, 0.6, 0.3, 0.1, 0.15, 0.7, 0.15, 0.05, 0.15, 0.8],
    ];
    let cam = aware_mscnn.camera_prior().unwrap().batch(&cams, &Device::Cpu).unwrap().with_cues(&cues, 2).unwrap();
    let cam5 = aware_basis.camera_prior().unwrap().batch(&cams, &Device::Cpu).unwrap().with_cues(&cues, 5).unwrap();
    assert_eq!(cam5.cues.as_ref().unwrap().dims(), [2, 3, 5, 1]);
    assert_eq!(cam.wiener.dtype(), DType::F64, "camera matrices take the network's dtype");
    let signed = random(&[2, 3, 8, 8], 27);
    let positive = ((random(&[2, 3, 8, 8], 30) + 1.5).unwrap() * 0.5).unwrap();
    let nets: [(&str, &dyn SpectralNet, &Tensor); 6] = [
        ("mscnn", &mscnn, &signed),
        ("basisnet", &basis, &signed),
        ("residual mscnn", &residual, &signed),
        ("normalised basisnet", &normalised, &positive),
        ("camera-aware mscnn", &aware_mscnn, &positive),
        ("camera-aware basisnet", &aware_basis, &positive),
    ];
    for (name, net, x) in nets {
        let c = net.camera_prior().map(|p| if p.cue_count() == 5 { &cam5 } else { &cam });
        let err = gradient_error(x, |x| weighted_sum(&net.forward_t(x, c, true)?, 28));
        assert!(err < 1e-5, "{name} input gradient: {err:e}");
    }
    let vars = vm.data().lock().unwrap().clone();
    for key in [
        "m.unet.down.1.conv2.weight",
        "m.unet.up.0.bn1.weight",
        "m.out.bias",
        "b.basis",
        "b.direct.weight",
        "b.head.weight",
        "r.prior.weight",
        "r.out.weight",
        "n.head.weight",
        "n.unet.down.0.conv1.weight",
        "ca.unet.down.0.conv1.weight",
        "ca.out.weight",
        "cb.direct.weight",
        "cb.head.bias",
    ] {
        let var = vars.get(key).unwrap_or_else(|| panic!("no tensor {key}"));
        let (net, x): (&dyn SpectralNet, &Tensor) = match key.split('.').next().unwrap() {
            "m" => (&mscnn, &signed),
            "b" => (&basis, &signed),
            "n" => (&normalised, &positive),
            "ca" => (&aware_mscnn, &positive),
            "cb" => (&aware_basis, &positive),
            _ => (&residual, &signed),
        };
        let c = net.camera_prior().map(|p| if p.cue_count() == 5 { &cam5 } else { &cam });
        let err = variable_gradient_error(var, 6, || weighted_sum(&net.forward_t(x, c, true).unwrap(), 29).unwrap());
        assert!(err < 1e-5, "{key}: relative gradient error {err:e}");
    }
}

#[test]
fn scaling_pixels_equals_candles_broadcast_product_in_value_and_gradient() {
    let s = ((random(&[2, 1, 3, 5], 40) + 1.5).unwrap() * 0.5).unwrap();
    let y = random(&[2, 4, 3, 5], 41);
    let fused = scale_pixels(&y, &s).unwrap();
    let reference = y.broadcast_mul(&s).unwrap();
    let gap = (fused - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    assert_eq!(gap, 0.0, "the same products");
    assert!(gradient_error(&y, |y| weighted_sum(&scale_pixels(y, &s)?, 42)) < 1e-7);
    // Factors that need a gradient take candle's op, which gives them one.
    let tracked = Var::from_tensor(&s).unwrap();
    let g = weighted_sum(&scale_pixels(&y, tracked.as_tensor()).unwrap(), 43).unwrap().backward().unwrap();
    assert!(g.get(tracked.as_tensor()).is_some());
    assert!(scale_pixels(&y, &random(&[2, 2, 3, 5], 44)).is_err(), "factors with channels are refused");
}

/// A training step's parameter gradients do not depend on whether the input image tracks a
/// gradient. When it does not (always, in training), the first convolution and the linear prior
/// skip their input gradients and the output is scaled back by the fused op; when it does,
/// everything runs as candle composes it.
#[test]
fn parameter_gradients_are_the_same_whether_or_not_the_input_needs_one() {
    let vm = VarMap::new();
    let config = MscnnConfig { bands: 5, width: 4, depth: 2, dropout: 0.0, linear_prior: true, intensity_normalised: true, camera_aware: false, camera_coords: 6, illumination_cues: false };
    let net = Mscnn::new(&config, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let x = ((random(&[2, 3, 8, 12], 45) + 1.5).unwrap() * 0.5).unwrap().to_dtype(DType::F32).unwrap();
    let target = random(&[2, 5, 8, 12], 46).abs().unwrap().to_dtype(DType::F32).unwrap();
    let tracked_x = Var::from_tensor(&x).unwrap();
    let untracked = loss_fn(Loss::MraeRmse, &net.forward_t(&x, None, true).unwrap(), &target).unwrap().backward().unwrap();
    let tracked = loss_fn(Loss::MraeRmse, &net.forward_t(tracked_x.as_tensor(), None, true).unwrap(), &target).unwrap().backward().unwrap();
    assert!(untracked.get(&x).is_none() && tracked.get(tracked_x.as_tensor()).is_some());
    let vars = vm.data().lock().unwrap().clone();
    assert!(vars.len() > 20);
    for (name, var) in vars {
        let (a, b) = (untracked.get(var.as_tensor()), tracked.get(var.as_tensor()));
        let (Some(a), Some(b)) = (a, b) else {
            assert!(name.contains("running"), "{name}: a gradient in one run only");
            continue;
        };
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        let gap = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(gap <= 1e-5 * scale, "{name}: gradients differ by {gap:e} (largest {scale:e})");
    }
}

/// The fused training op against the convolution and batch norm it replaces: the same output,
/// the same gradients for the input, the kernel, γ and β, and the same running statistics,
/// in f64 (im2col path) and in f32 (direct kernel where the CPU has it).
#[test]
fn fused_conv_batch_norm_equals_its_parts_in_value_gradient_and_statistics() {
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 2e-4)] {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, dtype, &Device::Cpu);
        let conv = Conv::new(3, 5, 3, 1, false, vb.pp("conv")).unwrap();
        let config = candle_nn::BatchNormConfig { eps: 1e-5, remove_mean: true, affine: true, momentum: 0.1 };
        let (fused_bn, parts_bn) = (BatchNorm2d::new(5, config, vb.pp("a")).unwrap(), BatchNorm2d::new(5, config, vb.pp("b")).unwrap());
        let vars = vm.data().lock().unwrap().clone();
        for p in ["a", "b"] {
            vars[&format!("{p}.weight")].set(&Tensor::new(&[0.5f64, -1.5, 2.0, 1.0, 0.7], &Device::Cpu).unwrap().to_dtype(dtype).unwrap()).unwrap();
            vars[&format!("{p}.bias")].set(&Tensor::new(&[0.1f64, 0.0, -0.3, 0.2, 0.05], &Device::Cpu).unwrap().to_dtype(dtype).unwrap()).unwrap();
        }
        let x = Var::from_tensor(&random(&[2, 3, 6, 7], 47).to_dtype(dtype).unwrap()).unwrap();
        let r = random(&[2, 5, 6, 7], 48).to_dtype(dtype).unwrap();
        let fused = conv_bn_act_train(x.as_tensor(), &conv, &fused_bn, Some(0.2)).unwrap();
        let parts = parts_bn.forward_act_t(&conv.forward(x.as_tensor()).unwrap(), true, Some(0.2)).unwrap();
        let gap = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        assert!(gap(&fused, &parts) < tol, "{dtype:?} output");
        let gf = (&fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (&parts * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let pairs = [(x.as_tensor(), x.as_tensor()), (conv.weight(), conv.weight()), (vars["a.weight"].as_tensor(), vars["b.weight"].as_tensor()), (vars["a.bias"].as_tensor(), vars["b.bias"].as_tensor())];
        for (i, (a, b)) in pairs.into_iter().enumerate() {
            let (ga, gb) = (gf.get(a).expect("fused gradient"), gp.get(b).expect("parts gradient"));
            assert!(gap(ga, gb) < tol, "{dtype:?} gradient {i}: {}", gap(ga, gb));
        }
        assert!(gap(fused_bn.running_mean(), parts_bn.running_mean()) < tol && gap(fused_bn.running_var(), parts_bn.running_var()) < tol, "{dtype:?} running statistics");
        assert!(gap(fused_bn.running_mean(), &fused_bn.running_mean().zeros_like().unwrap()) > 1e-4, "the statistics moved");
        assert!(conv_bn_act_train(x.as_tensor(), &conv, &fused_bn, Some(1.5)).is_err(), "a slope outside [0, 1) is refused here too");
    }
}
