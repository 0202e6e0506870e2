//! The portable path (candle's ops, what CUDA and Metal run) against the CPU kernels, on the CPU:
//! for every op, every architecture of the table and every network a trainer adds (USR's
//! discriminator and semantic branch, INSS's discriminators, UAL's fusion, adaptation and
//! degradation networks), the same outputs, the same gradients for the input and every
//! variable, the same running statistics after a training pass; and the portable path's input
//! gradients against finite differences. So a GPU runs math that is tested here, not hoped
//! right (see `src/nn/portable.rs`).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use spectral_studio::bench::device_check::{self, max_abs, set_smooth_moments, sorted_vars, tiny_config, two_cameras};
use spectral_studio::models::Architecture;
use spectral_studio::nn::portable::with_portable;

mod finite_diff;

use finite_diff::{gradient_error, random, sampled_gradient_error, weighted_sum};

/// max |a − b| over max |a| (floored at 1e-12): how far the portable result is from the kernels'.
fn gap(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    device_check::gap(a, b, 1e-12).unwrap()
}

/// What one pass on one path gave: the loss, its gradient for the input, for every variable
/// (by name), and every variable's value afterwards (running statistics move in training).
struct Pass {
    loss: f64,
    input_grad: Option<Tensor>,
    var_grads: Vec<(String, Option<Tensor>)>,
    after: Vec<(String, Tensor)>,
}

fn pass(map: &VarMap, x: &Tensor, loss: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>, portable: bool) -> Pass {
    let vars = sorted_vars(map);
    with_portable(portable, || {
        let input = Var::from_tensor(x).unwrap();
        let l = loss(input.as_tensor()).unwrap();
        let grads = l.backward().unwrap();
        Pass {
            loss: l.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap(),
            input_grad: grads.get(input.as_tensor()).cloned(),
            var_grads: vars.iter().map(|(k, v)| (k.clone(), grads.get(v.as_tensor()).cloned())).collect(),
            after: vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap())).collect(),
        }
    })
}

/// Runs `loss(x)` on the kernels and on the portable path from the same variables (restored
/// between the two) and asserts that the loss, every gradient and every variable's value after
/// agree to `tol` (relative); then checks the portable path's input gradient against finite
/// differences (f64 only).
fn agree(name: &str, map: &VarMap, x: &Tensor, loss: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>, tol: f64) {
    agree_fd(name, map, x, loss, tol, 1e-5)
}

/// [`agree`] with the finite-difference tolerance `fd_tol`.
fn agree_fd(name: &str, map: &VarMap, x: &Tensor, loss: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>, tol: f64, fd_tol: f64) {
    let before: Vec<(String, Tensor)> = sorted_vars(map).into_iter().map(|(k, v)| (k, v.as_tensor().copy().unwrap())).collect();
    let restore = || {
        let vars = sorted_vars(map);
        for ((_, var), (_, value)) in vars.iter().zip(&before) {
            var.set(value).unwrap();
        }
    };
    let kernels = pass(map, x, loss, false);
    restore();
    let portable = pass(map, x, loss, true);
    let loss_gap = (kernels.loss - portable.loss).abs() / kernels.loss.abs().max(1e-12);
    assert!(loss_gap < tol, "{name}: loss {} on the kernels, {} on the portable path", kernels.loss, portable.loss);
    match (&kernels.input_grad, &portable.input_grad) {
        (Some(a), Some(b)) => assert!(gap(a, b) < tol, "{name}: input gradients differ by {:e}", gap(a, b)),
        (None, None) => {}
        (a, b) => panic!("{name}: an input gradient on one path only (kernels {}, portable {})", a.is_some(), b.is_some()),
    }
    // A variable whose true gradient is zero (a convolution's bias before batch norm) has
    // rounding noise for one on both paths: gradients are compared on the scale of the largest.
    let largest = kernels.var_grads.iter().filter_map(|(_, g)| g.as_ref()).map(|g| max_abs(g).unwrap()).fold(0.0, f64::max);
    let mut compared = 0;
    for ((var, a), (_, b)) in kernels.var_grads.iter().zip(&portable.var_grads) {
        match (a, b) {
            (Some(a), Some(b)) => {
                let (own, relative) = (max_abs(a).unwrap(), device_check::gap(a, b, 1e-6 * largest).unwrap());
                assert!(relative < tol, "{name}: gradients of {var} differ by {relative:e} (largest {own:e}, the model's {largest:e})");
                compared += 1;
            }
            (None, None) => {}
            // running statistics are no parameters: whether a graph reaches them in inference
            // (the kernels fold them into a scale and shift) changes nothing trained
            _ if var.contains("running_") => {}
            (a, b) => panic!("{name}: a gradient of {var} on one path only (kernels {}, portable {})", a.is_some(), b.is_some()),
        }
    }
    assert!(map.data().lock().unwrap().is_empty() || compared > 0, "{name}: no variable got a gradient");
    for ((var, a), (_, b)) in kernels.after.iter().zip(&portable.after) {
        assert!(gap(a, b) < tol, "{name}: {var} after the pass differs by {:e}", gap(a, b));
    }
    restore();
    if x.dtype() == DType::F64 {
        let err = with_portable(true, || if x.elem_count() > 200 { sampled_gradient_error(x, 40, loss) } else { gradient_error(x, loss) });
        assert!(err < fd_tol, "{name}: the portable path's input gradient is {err:e} from finite differences");
        restore();
    }
}

fn op(name: &str, x: &Tensor, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) {
    agree(name, &VarMap::new(), x, &|x| weighted_sum(&f(x)?, 77), 1e-9);
}

/// A weight tensor the op differentiates, as a variable of its own map.
fn weight(map: &VarMap, name: &str, value: Tensor) -> Tensor {
    let vb = VarBuilder::from_varmap(map, DType::F64, &Device::Cpu);
    let t = vb.get(value.dims(), name).unwrap();
    map.data().lock().unwrap()[name].set(&value).unwrap();
    t
}

#[test]
fn every_op_agrees_between_the_kernels_and_the_portable_path() {
    use spectral_studio::nn::{act, conv, depthwise, gelu, layers, norm, pixel_scale, shuffle, strided_blur};
    let x = random(&[2, 3, 6, 8], 1);
    for (stride, padding, rows, cols) in [(1, 1, 6, 8), (2, 1, 6, 8), (2, 1, 7, 6), (1, 0, 5, 5)] {
        let map = VarMap::new();
        let w = weight(&map, "w", random(&[4, 3, 3, 3], 2));
        let b = weight(&map, "b", random(&[4], 3));
        let x = random(&[2, 3, rows, cols], 4);
        agree(&format!("conv2d stride {stride} padding {padding} on {rows}x{cols}"), &map, &x, &|x| weighted_sum(&conv::conv2d(x, &w, padding, stride)?, 5), 1e-9);
        agree(&format!("conv2d_bias stride {stride} padding {padding} on {rows}x{cols}"), &map, &x, &|x| weighted_sum(&conv::conv2d_bias(x, &w, &b, padding, stride)?, 6), 1e-9);
    }
    {
        let map = VarMap::new();
        let w = weight(&map, "w", random(&[5, 3, 1, 1], 7));
        let b = weight(&map, "b", random(&[5], 8));
        agree("conv2d_bias 1x1", &map, &x, &|x| weighted_sum(&conv::conv2d_bias(x, &w, &b, 0, 1)?, 9), 1e-9);
        // inference only: no gradient, the same values
        let y: Vec<Tensor> = [false, true].iter().map(|&p| with_portable(p, || conv::conv2d_bias_act(&x.to_dtype(DType::F32).unwrap(), &w.to_dtype(DType::F32).unwrap(), &b.to_dtype(DType::F32).unwrap(), 0, Some(0.2)).unwrap())).collect();
        assert!(gap(&y[0], &y[1]) < 1e-6, "conv2d_bias_act: {:e}", gap(&y[0], &y[1]));
    }
    for k in [3, 5] {
        let map = VarMap::new();
        let w = weight(&map, "w", random(&[3, 1, k, k], 10));
        agree(&format!("depthwise {k}x{k}"), &map, &x, &|x| weighted_sum(&depthwise::depthwise_conv2d(x, &w)?, 11), 1e-9);
    }
    op("leaky_relu", &x, |x| act::leaky_relu(x, 0.2));
    op("gelu", &x, gelu::gelu_erf);
    op("max_pool2x2", &x, layers::max_pool2x2);
    // Ties: the whole gradient goes to the first maximum in row-major order on both paths.
    let tied = Tensor::new(&[[[[1f64, 1., 0., 2.], [1., 0., 2., 2.]]]], &Device::Cpu).unwrap();
    for portable in [false, true] {
        let v = Var::from_tensor(&tied).unwrap();
        let g = with_portable(portable, || layers::max_pool2x2(v.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap());
        let g: Vec<f64> = g.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(g, vec![1., 0., 0., 1., 0., 0., 0., 0.], "max-pool ties, portable {portable}");
    }
    {
        let deep = random(&[2, 8, 3, 4], 12);
        let map = VarMap::new();
        let d = weight(&map, "deep", deep);
        agree("shuffle_concat", &map, &x, &|x| weighted_sum(&shuffle::shuffle_concat(x, &d)?, 13), 1e-9);
    }
    {
        let map = VarMap::new();
        let s = weight(&map, "s", random(&[2, 1, 6, 8], 14));
        agree("scale_pixels", &map, &x, &|y| weighted_sum(&pixel_scale::scale_pixels(y, &s)?, 15), 1e-9);
    }
    for (k, stride) in [(3, 2), (5, 4)] {
        let map = VarMap::new();
        let kernel = weight(&map, "k", random(&[1, 1, k, k], 16));
        let planes = random(&[3, 1, 13, 12], 17);
        agree(&format!("strided_blur {k}x{k} stride {stride}"), &map, &planes, &|p| weighted_sum(&strided_blur::strided_blur(p, &kernel, stride)?, 18), 1e-9);
    }
    {
        let map = VarMap::new();
        let w = weight(&map, "w", random(&[3], 19).affine(0.5, 1.0).unwrap());
        let b = weight(&map, "b", random(&[3], 20));
        agree("layer_norm_channels", &map, &x, &|x| weighted_sum(&norm::layer_norm_channels(x, &w, &b, 1e-5)?, 21), 1e-9);
    }
    {
        use spectral_studio::train::{loss_fn, Loss};
        let target = random(&[2, 3, 6, 8], 22).affine(0.5, 0.6).unwrap();
        for loss in [Loss::L1, Loss::Mrae, Loss::MraeL1, Loss::MraeRmse] {
            agree(&format!("loss {loss:?}"), &VarMap::new(), &x, &|p| loss_fn(loss, p, &target), 1e-9);
        }
    }
    // Batch norm and the fused convolution + batch norm + LeakyReLU: training passes move the
    // running statistics, which must move alike.
    {
        use spectral_studio::nn::batchnorm::BatchNorm2d;
        use spectral_studio::nn::conv::Conv;
        use spectral_studio::nn::conv_bn::conv_bn_act_train;
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
        let cfg = candle_nn::BatchNormConfig { eps: 1e-5, remove_mean: true, affine: true, momentum: 0.1 };
        let bn = BatchNorm2d::new(3, cfg, vb.pp("bn")).unwrap();
        let conv = Conv::new(3, 3, 3, 1, false, vb.pp("conv")).unwrap();
        for (name, value) in [("bn.weight", random(&[3], 23).affine(0.5, 1.0).unwrap()), ("bn.bias", random(&[3], 24)), ("bn.running_var", random(&[3], 25).affine(0.3, 1.0).unwrap())] {
            map.data().lock().unwrap()[name].set(&value).unwrap();
        }
        agree("batch norm, training", &map, &x, &|x| weighted_sum(&bn.forward_act_t(x, true, Some(0.2))?, 26), 1e-9);
        agree("batch norm, inference", &map, &x, &|x| weighted_sum(&bn.forward_act_t(x, false, None)?, 27), 1e-9);
        agree("conv + batch norm + LeakyReLU, training", &map, &x, &|x| weighted_sum(&conv_bn_act_train(x, &conv, &bn, Some(0.2))?, 28), 1e-9);
    }
}

/// Every weight redrawn from `check-device`'s seeded generator (the same nets each run), at the
/// scale it uses; running statistics and Wiener moments kept.
fn reseed(map: &VarMap, seed: u64) {
    spectral_studio::bench::device_check::reseed(map, seed).unwrap();
}

#[test]
fn every_architecture_agrees_between_the_kernels_and_the_portable_path() {
    let mut checked = Vec::new();
    for a in Architecture::ALL {
        let Some(config) = tiny_config(a) else {
            assert!(!a.is_network(), "{} is a network and needs a tiny config here", a.name());
            continue;
        };
        let map = VarMap::new();
        let net = a.build(&config, VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu)).unwrap();
        reseed(&map, 100);
        set_smooth_moments(&map).unwrap();
        let cam = two_cameras(net.as_ref(), &Device::Cpu).unwrap();
        // positive pictures (intensity normalisation divides by R+G+B), 16 px (USR's camera view)
        let x = random(&[2, 3, 16, 16], 3).affine(0.4, 0.5).unwrap();
        for train in [false, true] {
            let name = format!("{} ({})", a.name(), if train { "training" } else { "inference" });
            agree(&name, &map, &x, &|x| weighted_sum(&net.forward_t(x, cam.as_ref(), train)?, 31), 1e-8);
        }
        // f32, as inference runs: the paths agree to float precision
        let map32 = VarMap::new();
        let net32 = a.build(&config, VarBuilder::from_varmap(&map32, DType::F32, &Device::Cpu)).unwrap();
        reseed(&map32, 100);
        set_smooth_moments(&map32).unwrap();
        let cam32 = two_cameras(net32.as_ref(), &Device::Cpu).unwrap();
        let x32 = x.to_dtype(DType::F32).unwrap();
        let y: Vec<Tensor> = [false, true].iter().map(|&p| with_portable(p, || net32.forward_t(&x32, cam32.as_ref(), false).unwrap())).collect();
        assert!(gap(&y[0], &y[1]) < 1e-4, "{} in f32: {:e}", a.name(), gap(&y[0], &y[1]));
        checked.push(a.name());
    }
    assert_eq!(checked, ["mscnn", "basisnet", "mstpp", "usr", "inss"]);
}

#[test]
fn the_networks_trainers_add_agree_between_the_kernels_and_the_portable_path() {
    // USR: the generator's whole loss, through the discriminator and the semantic branch.
    {
        use spectral_studio::models::usr::{Discriminator, Semantic, Usr, UsrConfig};
        use spectral_studio::train::usr::{GeneratorTerms, UsrLoss};
        let cfg: UsrConfig = serde_json::from_value(tiny_config(Architecture::Usr).unwrap()).unwrap();
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
        let usr = Usr::new(&cfg, vb.clone()).unwrap();
        let disc = Discriminator::new(&cfg, vb.pp("discriminator")).unwrap();
        let semantic = Semantic::new(&cfg, vb.pp("semantic")).unwrap();
        reseed(&map, 200);
        let labels = random(&[2, 3, 16, 16], 4);
        let onehot = labels.broadcast_eq(&labels.max_keepdim(1).unwrap()).unwrap().to_dtype(DType::F64).unwrap();
        // clipping off: the clipped gradient is not the derivative (finite differences), and the
        // clipping op's backward is plain tensor ops on every device
        let loss = UsrLoss { clip: false, ..UsrLoss::default() };
        let x = random(&[2, 3, 16, 16], 5).affine(0.4, 0.5).unwrap();
        // 10⁻⁴ from finite differences: the loss has kinks (LeakyReLU, |Ỹ|) and terms up to
        // 100·S_bp; each term's gradient is checked to 10⁻⁵ in tests/usr.rs
        agree_fd("usr generator loss", &map, &x, &|x| {
            let (y, raw, est) = usr.forward_train(x)?;
            GeneratorTerms::new(x, &y, &raw, &est.response, &disc, &semantic, &onehot, &loss)?.total(&loss)
        }, 1e-8, 1e-4);
    }
    // INSS: the generator terms and both discriminators.
    {
        use spectral_studio::models::inss::{grid_spectra, SpatialDiscriminator, SpectralDiscriminator};
        use spectral_studio::train::inss::{GeneratorTerms, InssLoss};
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
        let spatial = SpatialDiscriminator::new(6, 4, vb.pp("spatial")).unwrap();
        let spectral = SpectralDiscriminator::new(6, 4, vb.pp("spectral")).unwrap();
        reseed(&map, 300);
        // 32 px: the spatial discriminator's three stride-2 4×4 convolutions need it
        let (linear, target) = (random(&[2, 6, 32, 32], 23).affine(0.4, 0.5).unwrap(), random(&[2, 6, 32, 32], 22).affine(0.4, 0.5).unwrap());
        let camera = random(&[3, 6], 24).abs().unwrap();
        let weights = Tensor::new(&[0.1f64, 0.2, 0.3, 0.1, 0.2, 0.1], &Device::Cpu).unwrap();
        let rgb = random(&[2, 3, 32, 32], 25).affine(0.4, 0.5).unwrap();
        let cube = random(&[2, 6, 32, 32], 21).affine(0.4, 0.5).unwrap();
        agree("inss generator terms + discriminators", &map, &cube, &|c| {
            let terms = GeneratorTerms::new(c, &linear, &target, &weights, &camera)?.total(&InssLoss::default())?;
            let d_spatial = spatial.forward_t(&rgb, c, true)?.mean_all()?;
            let d_spectral = spectral.forward(&grid_spectra(c, (1, 2))?)?.mean_all()?;
            terms + d_spatial + d_spectral
        }, 1e-8);
    }
    // UAL: the fusion module, the adaptation module and the degradation network.
    {
        use spectral_studio::models::ual::{degrade, Adaptation, Fusion, UalConfig};
        let cfg = UalConfig { bands: 4, msi_bands: 3, width: 3, depth: 2, residual: true };
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
        let fusion = Fusion::new(&cfg, vb.pp("fusion")).unwrap();
        let adapt = Adaptation::new(&cfg, vb.pp("adapt")).unwrap();
        reseed(&map, 400);
        // the degradation network's kernel (8×8 here, 32×32 in use), stride 4
        let kernel = weight(&map, "kernel", random(&[1, 1, 8, 8], 9).abs().unwrap().affine(1.0 / 32.0, 0.0).unwrap());
        let y_up = random(&[1, 4, 16, 16], 8).affine(0.4, 0.5).unwrap();
        let x = random(&[1, 3, 16, 16], 7).affine(0.4, 0.5).unwrap();
        agree("ual fusion + adaptation + degradation", &map, &x, &|x| {
            let z = adapt.forward(&fusion.forward(x, &y_up)?)?;
            let lr = degrade(&z, &kernel, 4)?;
            weighted_sum(&z, 41)? + weighted_sum(&lr, 42)?
        }, 1e-8);
    }
}

#[test]
fn check_device_passes_on_the_cpus_portable_path_and_names_what_it_checked() {
    use spectral_studio::bench::device_check::check;
    let reports = check(&Device::Cpu);
    let failed: Vec<_> = reports.iter().filter(|r| !r.ok).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    // every network of the table, inference and training, and the trainers' networks
    for name in ["mscnn", "basisnet", "mstpp", "usr", "inss", "usr discriminator + semantic branch", "inss discriminators", "ual fusion + adaptation + degradation"] {
        for pass in ["inference", "training"] {
            assert!(reports.iter().any(|r| r.name == name && r.pass == pass), "no {name} {pass}");
        }
    }
    // training compares gradients: some gap is measured (the two paths sum in different orders)
    assert!(reports.iter().filter(|r| r.pass == "training").all(|r| r.gradient_gap > 0.0 && !r.worst.is_empty()), "{reports:#?}");
}
