//! `spectral-studio`: argument parsing only; each subcommand is one call into `cli`.
//!
//! Exit codes: 0 success, 1 the command failed (the reason is on stderr), 2 the command line
//! could not be parsed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spectral_studio::cli;
use spectral_studio::io::Layout;

#[derive(Parser)]
#[command(name = "spectral-studio", version, about = "Hyperspectral images: open, simulate, measure.", args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: open the studio on these files (RGB images, cubes), or on the
    /// bundled demo when none are given.
    files: Vec<PathBuf>,
    /// Cubes whose data (as 32-bit floats) exceed this many MiB open read-on-demand from their
    /// file (ENVI, .npy): an overview of every band in memory, tiles and spectra read when
    /// asked for. Default 1024.
    #[arg(long, value_name = "MIB")]
    memory_cap: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Print size, wavelengths and value range of a cube or RGB image.
    Info {
        file: PathBuf,
        /// MATLAB/HDF5 variable holding the cube (found automatically if omitted).
        #[arg(long)]
        key: Option<String>,
        /// Axis order of plain 3-D arrays: hwc = (rows, cols, bands), chw = (bands, rows, cols).
        #[arg(long, value_enum, default_value_t = Layout::Hwc)]
        layout: Layout,
        #[arg(long)]
        json: bool,
        /// Also print a table of per-band statistics (always in --json).
        #[arg(long)]
        bands: bool,
    },
    /// Convert a cube to another format (.npy, .hdr, .mat), chosen by the output extension.
    Convert {
        input: PathBuf,
        output: PathBuf,
        #[arg(long)]
        key: Option<String>,
        #[arg(long, value_enum, default_value_t = Layout::Hwc)]
        layout: Layout,
    },
    /// Render a cube to RGB through a camera response (clean, or NTIRE 2020 real-world).
    Render {
        cube: PathBuf,
        /// Built-in camera name (see `assets`) or a CSV file with columns wavelength,r,g,b.
        #[arg(long)]
        camera: String,
        /// Illuminant to multiply a reflectance cube by (see `assets`).
        #[arg(long)]
        illuminant: Option<String>,
        /// Simulate the NTIRE 2020 real-world track: mosaic, noise, demosaic, JPEG.
        #[arg(long)]
        real_world: bool,
        /// Seed of the real-world simulation's noise.
        #[arg(long, default_value_t = 0, requires = "real_world")]
        seed: u64,
        /// JPEG quality of the real-world simulation (1–100, default 80).
        #[arg(long, requires = "real_world")]
        jpeg_quality: Option<u8>,
        /// Write 8-bit instead of 16-bit PNG.
        #[arg(long)]
        bits8: bool,
        /// Output file: .png (linear RGB) or .npy ((rows, cols, 3) float32).
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// Measure a predicted cube against ground truth (MRAE, RMSE, PSNR, MPSNR, SSIM, SAM, consistency).
    Eval {
        pred: PathBuf,
        gt: PathBuf,
        /// The RGB input of the reconstruction, for the physical-consistency test.
        #[arg(long, requires = "camera")]
        rgb: Option<PathBuf>,
        /// The camera response assumed by the consistency test.
        #[arg(long, requires = "rgb")]
        camera: Option<String>,
        /// The RGB file is sRGB-encoded (linearise it).
        #[arg(long)]
        srgb: bool,
        /// Leave bands out of the metrics (not of consistency): `water` (1340-1460 and
        /// 1790-1970 nm, the water-vapour bands airborne users drop), `bbl` (the bands the
        /// ground truth's ENVI header marks bad), ranges in nm such as `2400-2500`, or a comma
        /// list of these.
        #[arg(long)]
        exclude_bands: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Fully constrained linear unmixing over a spectral library.
    Unmix {
        cube: PathBuf,
        /// Built-in library name (see `assets`) or a CSV/ENVI .sli file.
        #[arg(long, default_value = "earthlib")]
        library: String,
        /// Use exactly these materials (comma-separated names from the library).
        #[arg(long, value_delimiter = ',')]
        materials: Vec<String>,
        /// Without --materials, choose at most this many endmembers from the library.
        #[arg(long, default_value_t = 8)]
        endmembers: usize,
        /// Abundances as (rows, cols, endmembers) float32 .npy, or ENVI (.hdr: one band per
        /// endmember); the residual map is written beside it as NAME_residual.npy (or .hdr).
        /// The cube is read and the outputs written block by block, so it may exceed memory.
        #[arg(short = 'o', long)]
        output: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Estimate the camera response C from a cube and its RGB image (X = C·Y).
    FitCamera {
        cube: PathBuf,
        rgb: PathBuf,
        /// The RGB file is sRGB-encoded (linearise it).
        #[arg(long)]
        srgb: bool,
        /// Smoothness weight (relative); chosen by hold-out validation if omitted.
        #[arg(long)]
        smoothness: Option<f64>,
        /// A known camera to compare the fitted curves with.
        #[arg(long)]
        camera: Option<String>,
        /// Write the fitted curves as CSV (wavelength,r,g,b).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Generate a synthetic scene: cube, its RGB, a preview and a description.
    Scene {
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// ROWSxCOLS
        #[arg(long, default_value = "256x256")]
        size: String,
        #[arg(long, default_value = "canon-eos-5d-mark-ii")]
        camera: String,
        /// One of inss's nadir aerial scenes over 400–2450 nm instead (square; the cube is
        /// written as ENVI, which carries its wavelengths).
        #[arg(long)]
        aerial: bool,
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// A grid of true-colour previews of the data engine's scenes (the world a protocol tests
    /// on; in-distribution is the training world), one line per scene.
    World {
        #[arg(long, default_value = "in-distribution")]
        protocol: String,
        /// First scene seed.
        #[arg(long, default_value_t = 1_000_000)]
        seed: u64,
        #[arg(long, default_value_t = 16)]
        count: usize,
        #[arg(long, default_value_t = 128)]
        size: usize,
        /// Show inss's nadir aerial scenes (400–2450 nm, drawn in true colour) instead.
        #[arg(long, conflicts_with = "protocol")]
        aerial: bool,
        /// The grid, PNG.
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// List the spectral data shipped with the studio.
    Assets {
        #[arg(long)]
        json: bool,
    },
    /// Reconstruct a 31-band cube from an RGB image (linear camera RGB unless --srgb).
    Reconstruct {
        rgb: PathBuf,
        /// spline, linear, pca, mscnn, basisnet, or any model name `methods` lists.
        #[arg(long)]
        method: String,
        /// Model weights instead of the method's shipped one: NAME.safetensors beside NAME.json, or
        /// a PyTorch checkpoint (.pth/.pt; its card is NAME.json beside it, else inferred).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Camera assumed to have taken the picture (default: the model's, else the Canon).
        #[arg(long)]
        camera: Option<String>,
        /// Correct the result so the camera reproduces the input RGB exactly (non-negative).
        #[arg(long)]
        consistent: bool,
        /// Normalise input brightness to the model's and rescale the output.
        #[arg(long)]
        exposure_invariant: bool,
        /// as-stored (linear camera RGB, C·result ≈ input) or min-max (normalised over the image,
        /// as the MST++ authors' predict code does; the result stays in that scale).
        #[arg(long, default_value = "as-stored")]
        input_scale: String,
        /// none, mean or median of the 8 flips and transposes of the input (self-ensemble).
        #[arg(long, default_value = "none")]
        ensemble: String,
        /// Clip the result to [0, 1] (before --consistent, whose correction may then exceed 1).
        #[arg(long)]
        clip: bool,
        /// The RGB file is sRGB-encoded (linearise it).
        #[arg(long)]
        srgb: bool,
        /// cpu, cuda or metal (the last two need a build with that cargo feature).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Output cube: .npy, .hdr or .mat.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// usr without --camera: write the camera estimated from the picture (wavelength,r,g,b).
        #[arg(long)]
        camera_out: Option<PathBuf>,
        /// inss: also write the abundances over its library, (rows, cols, N_g) .npy, with their
        /// names, the learned signature and the per-pixel nonlinearity in a .json beside it.
        #[arg(long, value_name = "A.npy")]
        abundances: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// A cube larger than this many MiB is made tile by tile straight into the output file
        /// (ENVI or .npy), never whole in memory. Default 1024.
        #[arg(long, value_name = "MIB")]
        memory_cap: Option<u64>,
    },
    /// Estimate the camera response of a picture from the picture alone (usr's estimator), or
    /// measure the estimate on a protocol's test scenes against the mean shipped camera.
    EstimateCamera {
        /// The picture (linear camera RGB unless --srgb).
        #[arg(required_unless_present = "protocol")]
        rgb: Option<PathBuf>,
        /// Measure on this protocol's test scenes instead (in-distribution, cross-library,
        /// cross-camera, cross-illuminant).
        #[arg(long, conflicts_with = "rgb")]
        protocol: Option<String>,
        /// Test scenes with --protocol.
        #[arg(long, default_value_t = 8)]
        scenes: usize,
        /// Side of the test scenes with --protocol.
        #[arg(long, default_value_t = 128)]
        size: usize,
        #[arg(long)]
        srgb: bool,
        /// A usr model (default: the shipped models/usr).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Write the curves (wavelength,r,g,b; each channel summing to 1).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Simulate a fusion pair from a cube: blur by one kernel for every band, down-sample by
    /// --scale, add noise (seeded); optionally the high-resolution RGB through --camera.
    Degrade {
        cube: PathBuf,
        #[arg(long)]
        scale: usize,
        /// gaussian:SIZE,SIGMA, anisotropic:SIZE,MAJOR,MINOR,ANGLE, motion:LENGTH,ANGLE, disk:RADIUS or FILE.npy.
        #[arg(long, default_value = "gaussian:8,1.7320508")]
        kernel: String,
        /// Signal-to-noise ratio of the low-resolution cube in dB (default: no noise).
        #[arg(long)]
        snr: Option<f64>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Camera of the RGB written by --rgb-out.
        #[arg(long, default_value = "canon-eos-5d-mark-ii")]
        camera: String,
        /// Low-resolution cube: .npy, .hdr, .mat or .h5.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Also write the full-resolution clean RGB: .npy (float, exact) or .png (16-bit linear,
        /// clipped to [0, 1]).
        #[arg(long)]
        rgb_out: Option<PathBuf>,
        /// Also write the kernel used (.npy, summing to one).
        #[arg(long)]
        kernel_out: Option<PathBuf>,
    },
    /// Fuse a high-resolution RGB and a low-resolution cube of the same scene (UAL, Zhang et al.
    /// 2020): the pretrained fusion module, then test-time adaptation that learns the blur.
    Fuse {
        /// The high-resolution RGB (linear camera RGB: .png, .tif, .npy).
        rgb: PathBuf,
        /// The low-resolution cube (any readable format); its wavelengths are the output's.
        cube: PathBuf,
        /// Camera of the RGB: built-in name or CSV.
        #[arg(long)]
        camera: String,
        #[arg(long)]
        scale: usize,
        /// Adaptation steps (0: the pretrained fusion module alone). The default fits a 256×256,
        /// ×8 pair in 5 minutes on 2 cores; the paper runs 1500.
        #[arg(long, default_value_t = spectral_studio::recon::fusion::DEFAULT_STEPS)]
        steps: usize,
        /// Pretrained fusion module (default: the shipped models/ual-fusion).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Adapt through the paper's predefined 8×8 Gaussian (σ √3) instead of learning the blur.
        #[arg(long)]
        predefined_kernel: bool,
        /// No fusion module: adapt from the bicubic up-sampled cube (the paper's ablation).
        #[arg(long)]
        no_fusion: bool,
        /// The scene-subspace layer (not in the paper) the fusion module's output and every
        /// adapted cube pass through: spectra in the span of the cube's first RANK principal
        /// directions, matching the RGB exactly. auto: the image's channels + 1; off: the
        /// paper's UAL; 3 with --no-fusion --steps 0: the classical subspace fusion.
        #[arg(long, value_name = "auto|off|RANK", default_value = "auto")]
        subspace: String,
        /// Learning rate of the adaptation module [default: 9e-5, the paper's].
        #[arg(long)]
        lr_adapt: Option<f64>,
        /// Learning rate of the degradation network (the blur) [default: 1e-4, the paper's].
        #[arg(long)]
        lr_kernel: Option<f64>,
        /// The RGB file is sRGB-encoded (linearise it).
        #[arg(long)]
        srgb: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Write the learned blur kernel (.npy, 2-D, centred, summing to one).
        #[arg(long)]
        kernel_out: Option<PathBuf>,
        /// JSON lines: one per step, then the summary.
        #[arg(long)]
        json: bool,
    },
    /// Score fusion on held-out pairs: bicubic, the fusion module alone, UAL, and UAL through the
    /// predefined kernel or without the fusion module (the paper's ablations).
    CompareFusion {
        #[arg(long, default_value_t = 4)]
        scenes: usize,
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value_t = 8)]
        scale: usize,
        #[arg(long, default_value_t = 35.0)]
        snr: f64,
        #[arg(long, default_value_t = spectral_studio::recon::fusion::DEFAULT_STEPS)]
        steps: usize,
        /// Pretrained fusion module (default: the shipped models/ual-fusion).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Comma-separated subset of bicubic, subspace, fusion-only, ual, ual-predefined-kernel, ual-no-fusion, fusion-only-subspace, ual-subspace (default: all).
        #[arg(long)]
        variants: Option<String>,
        /// The test scenes' world: held-out (spectra, lights and cameras the pretraining never
        /// saw) or a protocol's (in-distribution, cross-library, cross-camera, cross-illuminant).
        #[arg(long, default_value = "held-out")]
        world: String,
        /// Learning rate of the adaptation module [default: 9e-5, the paper's].
        #[arg(long)]
        lr_adapt: Option<f64>,
        /// Learning rate of the degradation network [default: 1e-4, the paper's].
        #[arg(long)]
        lr_kernel: Option<f64>,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Check a device: every network and op runs on it and on the CPU kernels from the same
    /// weights; outputs, gradients and running statistics must agree. On `cpu` the portable
    /// path (what GPUs run) is checked against the CPU kernels. Exit status 1 if any case fails.
    CheckDevice {
        /// cpu, cuda or metal.
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// List the reconstruction methods and the models found.
    Methods {
        #[arg(long)]
        json: bool,
    },
    /// Train a learned method, or fit a closed-form one (linear, pca).
    Train {
        /// mscnn, basisnet, mstpp, linear, pca, or ual (the fusion module of `fuse`).
        #[arg(long)]
        method: String,
        /// A folder of cubes (any supported format) to train on.
        #[arg(long, conflicts_with = "synthetic")]
        data: Option<PathBuf>,
        /// Train on N synthetic scenes instead.
        #[arg(long)]
        synthetic: Option<usize>,
        /// Train on N scenes of the world's training side (random spectra, lights and cameras;
        /// a camera-aware network sees each patch's own camera).
        #[arg(long, conflicts_with_all = ["synthetic", "data"])]
        world: Option<usize>,
        /// Train inss on N nadir aerial scenes over 400–2450 nm (earthlib materials under ASTM
        /// G173; the model keeps the wide library's 180 bands).
        #[arg(long, conflicts_with_all = ["synthetic", "data", "world"])]
        aerial: Option<usize>,
        /// Side of the synthetic, world or aerial scenes in pixels.
        #[arg(long, default_value_t = 128)]
        size: usize,
        #[arg(long, default_value = "canon-eos-5d-mark-ii")]
        camera: String,
        /// Simulate NTIRE 2020 real-world inputs (mosaic, noise, demosaic, JPEG).
        #[arg(long)]
        real_world: bool,
        /// Training steps [default: 2000; inss: 300, which on 2 cores fits a 150 × 150 × 200 cube in 15 minutes].
        #[arg(long)]
        steps: Option<usize>,
        /// Patches per step [default: 8; ual: 6, the paper's].
        #[arg(long)]
        batch: Option<usize>,
        /// Side of the square training patches [default: 64; ual: 128, the paper's].
        #[arg(long)]
        patch: Option<usize>,
        /// Learning rate [default: 2e-3; ual: 1e-4, the paper's].
        #[arg(long)]
        lr: Option<f64>,
        /// cosine, step (the paper's: ×0.93 for mscnn, ×0.7 for ual) or constant [default:
        /// cosine; ual: step].
        #[arg(long)]
        schedule: Option<String>,
        /// mrae+l1 (relative plus scaled absolute error), mrae+rmse (relative plus scaled RMSE), mrae or l1.
        #[arg(long, default_value = "mrae+l1")]
        loss: String,
        #[arg(long)]
        width: Option<usize>,
        #[arg(long)]
        depth: Option<usize>,
        /// Basis spectra of basisnet.
        #[arg(long)]
        basis: Option<usize>,
        /// Transformer stages in sequence of mstpp (the paper's 3).
        #[arg(long)]
        stages: Option<usize>,
        /// inss: the order of the mixing model (the paper's 3; 1 is linear mixing).
        #[arg(long)]
        order: Option<usize>,
        /// Down-sampling factor the ual fusion module is pretrained for (default 8).
        #[arg(long)]
        scale: Option<usize>,
        /// ual: the fusion module outputs Y↑ plus what it learns (not in the paper, whose module
        /// outputs the cube directly).
        #[arg(long)]
        residual: bool,
        /// usr: train without these loss components (comma-separated: bp, s1, pos, clip, sem),
        /// for the paper's ablation.
        #[arg(long)]
        ablate: Option<String>,
        /// usr: add S_cam, the L1 distance between the estimated curves and the dictionary
        /// camera that took each training picture, with this weight (not in the paper, which
        /// has no camera labels; the world's pictures have them).
        #[arg(long)]
        camera_loss: Option<f64>,
        /// usr: clip the gradients from D and from the semantic branch each on its own (the
        /// shipped model clipped their sum once).
        #[arg(long)]
        separate_clips: bool,
        /// 2D dropout probability after each activation (mscnn default 0.2, the paper's).
        #[arg(long)]
        dropout: Option<f64>,
        /// mscnn, basisnet, mstpp: keep an exponential moving average of the weights with this
        /// decay (e.g. 0.999), and validate and write the average instead of the last step's
        /// weights.
        #[arg(long)]
        ema: Option<f64>,
        /// mscnn, basisnet, mstpp: add W·mean(1 − cos), the spectral angle between each
        /// pixel's predicted and true spectrum, to --loss.
        #[arg(long)]
        angle: Option<f64>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 250)]
        validate_every: usize,
        #[arg(long, default_value_t = 500)]
        checkpoint_every: usize,
        /// Name of the model written (default: the method).
        #[arg(long)]
        name: Option<String>,
        /// Continue from a checkpoint (OUT/checkpoints/ckpt-NNNNNN.safetensors).
        #[arg(long)]
        resume: Option<PathBuf>,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long)]
        out: PathBuf,
        /// JSON lines (one per event) instead of a progress bar.
        #[arg(long)]
        json: bool,
    },
    /// Compare methods the NTIRE 2020 way on ground-truth cubes rendered through a camera.
    Compare {
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
        /// A model file to score beside the methods, named after the file (repeatable): weights
        /// beside their card, or a PyTorch checkpoint (.pth/.pt).
        #[arg(long = "model")]
        models: Vec<PathBuf>,
        /// A folder of ground-truth cubes.
        #[arg(long, conflicts_with = "synthetic")]
        data: Option<PathBuf>,
        /// Use N held-out synthetic scenes (seeds 1..=N, never trained on) instead; with
        /// --protocol, the number of test scenes per protocol (default 8).
        #[arg(long)]
        synthetic: Option<usize>,
        /// A generalisation protocol (in-distribution, cross-library, cross-camera,
        /// cross-illuminant) or `all`: score on that protocol's held-out test scenes, each seen
        /// through its own camera, which every method is told.
        #[arg(long, conflicts_with = "data")]
        protocol: Option<String>,
        /// Side of the synthetic or protocol scenes.
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value = "canon-eos-5d-mark-ii")]
        camera: String,
        /// With --protocol: every scene through --camera instead of its own (for one-camera
        /// models, e.g. an mstpp trained for the Canon); cross-camera is then skipped.
        #[arg(long, requires = "protocol")]
        fixed_camera: bool,
        /// With --protocol: tell every method this camera (a name or CSV) whatever camera took
        /// each picture, as a user who does not know their camera would (usr-blind ignores it).
        #[arg(long, requires = "protocol", conflicts_with = "fixed_camera")]
        assume: Option<String>,
        #[arg(long)]
        consistent: bool,
        #[arg(long)]
        exposure_invariant: bool,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Write each method's score into its model card (`metrics`).
        #[arg(long)]
        record: bool,
        /// With --protocol: also list every test scene's light and camera and each method's
        /// MRAE on it (and RMSE and SAM in --json).
        #[arg(long, requires = "protocol")]
        per_scene: bool,
        #[arg(long)]
        json: bool,
    },
    /// Measure speed (JSON, medians).
    Bench {
        #[arg(value_enum)]
        suite: cli::BenchSuite,
        /// Timed repetitions per measurement.
        #[arg(long, default_value_t = 7)]
        repeats: usize,
        /// Accepted for symmetry with the other commands: bench always prints JSON.
        #[arg(long)]
        json: bool,
        /// Part of the recon suite: `all`, `parity` (the U-Net timings the PyTorch script needs) or `profile` (where the U-Net's time goes).
        #[arg(long = "suite", id = "part", default_value = "all")]
        part: String,
        /// Weights for the recon suite's U-Net (default: the shipped mscnn).
        #[arg(long)]
        model: Option<PathBuf>,
        /// The large suite's cube (an ENVI header or data file, or a .npy).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Large suite: first write a synthetic float32 ENVI cube of about this many GiB at --file.
        #[arg(long, value_name = "GIB")]
        create: Option<f64>,
        /// Large suite: interleave of the cube --create writes (bsq, bil, bip).
        #[arg(long, default_value = "bil")]
        interleave: String,
        /// Where the recon and fusion suites run their models: cpu, cuda or metal (the latter two
        /// need a build with that feature).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

fn main() -> ExitCode {
    spectral_studio::malloc_tuning::keep_freed_memory();
    // Output piped into `head` and closed early ends the program quietly, as other command-line
    // tools do, instead of a panic in `println!` (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = Args::parse();
    // A mistyped SPECTRAL_STUDIO_OPS is an error, not a silent fall-back to the CPU kernels.
    if let Err(e) = spectral_studio::nn::portable::env_choice() {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let result = match args.command {
        None => spectral_studio::app::run(args.files, args.memory_cap.map(|m| m << 20)),
        Some(command) => run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The command line as typed (program name shortened), for model cards.
fn command_line() -> String {
    let mut args = std::env::args();
    args.next();
    std::iter::once("spectral-studio".to_string()).chain(args).collect::<Vec<_>>().join(" ")
}

fn run(command: Command) -> spectral_studio::Result<()> {
    match command {
        Command::Info { file, key, layout, json, bands } => cli::info(&file, key, layout, json, bands),
        Command::Convert { input, output, key, layout } => cli::convert(&input, &output, key, layout),
        Command::Render { cube, camera, illuminant, real_world, seed, jpeg_quality, bits8, output } => {
            let real_world = real_world.then_some(cli::RealWorld { seed, jpeg_quality });
            cli::render(&cube, &camera, illuminant.as_deref(), real_world, !bits8, &output)
        }
        Command::Eval { pred, gt, rgb, camera, srgb, exclude_bands, json } => {
            cli::eval(&pred, &gt, rgb.as_deref(), camera.as_deref(), srgb, exclude_bands.as_deref(), json)
        }
        Command::Unmix { cube, library, materials, endmembers, output, json } => {
            cli::unmix(&cube, &library, &materials, endmembers, &output, json)
        }
        Command::FitCamera { cube, rgb, srgb, smoothness, camera, output, json } => {
            cli::fit_camera(&cube, &rgb, srgb, smoothness, camera.as_deref(), output.as_deref(), json)
        }
        Command::Scene { seed, size, camera, aerial, output } if aerial => cli::aerial_scene(seed, &size, &camera, &output),
        Command::Scene { seed, size, camera, output, .. } => cli::scene(seed, &size, &camera, &output),
        Command::World { protocol, seed, count, size, aerial, output } => cli::world_grid(if aerial { None } else { Some(&protocol) }, seed, count, size, &output),
        Command::Assets { json } => cli::assets(json),
        Command::EstimateCamera { rgb, protocol, scenes, size, srgb, model, output, device, json } => cli::estimate_camera(cli::EstimateCameraArgs {
            rgb: rgb.as_deref(),
            protocol: protocol.as_deref(),
            scenes,
            size,
            srgb,
            model: model.as_deref(),
            output: output.as_deref(),
            device: &device,
            json,
        }),
        Command::Reconstruct { rgb, method, model, camera, consistent, exposure_invariant, input_scale, ensemble, clip, srgb, device, output, camera_out, abundances, json, memory_cap } => {
            use spectral_studio::recon::{Ensemble, InputScale, ReconOptions};
            cli::reconstruct(cli::ReconstructArgs {
                rgb: &rgb,
                method: &method,
                model: model.as_deref(),
                camera: camera.as_deref(),
                options: ReconOptions { consistent, exposure_invariant, input_scale: InputScale::parse(&input_scale)?, ensemble: Ensemble::parse(&ensemble)?, clip },
                srgb,
                device: &device,
                output: &output,
                camera_out: camera_out.as_deref(),
                abundances: abundances.as_deref(),
                json,
                memory_cap: memory_cap.map(|m| m << 20),
            })
        }
        Command::Degrade { cube, scale, kernel, snr, seed, camera, output, rgb_out, kernel_out } => cli::degrade(cli::DegradeArgs {
            cube: &cube,
            scale,
            kernel: &kernel,
            snr_db: snr,
            seed,
            camera: &camera,
            output: &output,
            rgb_out: rgb_out.as_deref(),
            kernel_out: kernel_out.as_deref(),
        }),
        Command::Fuse { rgb, cube, camera, scale, steps, model, predefined_kernel, no_fusion, subspace, lr_adapt, lr_kernel, srgb, seed, device, output, kernel_out, json } => cli::fuse(cli::FuseArgs {
            rgb: &rgb,
            cube: &cube,
            camera: &camera,
            scale,
            steps,
            model: model.as_deref(),
            predefined_kernel,
            no_fusion,
            subspace: &subspace,
            lr_adapt,
            lr_kernel,
            srgb,
            seed,
            device: &device,
            output: &output,
            kernel_out: kernel_out.as_deref(),
            json,
        }),
        Command::CompareFusion { scenes, size, scale, snr, steps, model, variants, world, lr_adapt, lr_kernel, device, json } => cli::compare_fusion(cli::CompareFusionArgs {
            scenes,
            size,
            scale,
            snr_db: snr,
            steps,
            model: model.as_deref(),
            variants: variants.as_deref(),
            world: &world,
            lr_adapt,
            lr_kernel,
            device: &device,
            json,
        }),
        Command::CheckDevice { device, json } => cli::check_device(&device, json),
        Command::Methods { json } => cli::methods(json),
        Command::Train {
            method, data, synthetic, world, aerial, size, camera, real_world, steps, batch, patch, lr, schedule, loss, width, depth, basis, stages, order, scale, residual, ablate, camera_loss, separate_clips, dropout, ema, angle, seed,
            validate_every, checkpoint_every, name, resume, device, out, json,
        } => cli::train(cli::TrainArgs {
            method, data, synthetic, world, aerial, size, camera, real_world, steps, batch, patch, lr, schedule, loss, width, depth, basis, stages, order, scale, residual, ablate, camera_loss, separate_clips, dropout, ema, angle, seed,
            validate_every, checkpoint_every, name, resume, device, out, json,
            command_line: command_line(),
        }),
        Command::Compare { methods, models, data, synthetic, protocol, size, camera, fixed_camera, assume, consistent, exposure_invariant, device, record, per_scene, json } => {
            let data = match (data, synthetic, protocol) {
                (Some(dir), None, None) => cli::CompareData::Folder(dir),
                (None, Some(count), None) => cli::CompareData::Synthetic { count, size },
                (None, count, Some(p)) => {
                    use spectral_studio::train::world::Protocol;
                    let protocols = if p == "all" { Protocol::ALL.to_vec() } else { p.split(',').map(Protocol::parse).collect::<Result<Vec<_>, _>>()? };
                    cli::CompareData::Protocols { protocols, count: count.unwrap_or(8), size, fixed_camera, assumed: assume, per_scene }
                }
                _ => return Err(spectral_studio::Error::invalid("give exactly one of --data DIR, --synthetic N or --protocol NAME")),
            };
            let options = spectral_studio::recon::ReconOptions { consistent, exposure_invariant, ..Default::default() };
            let mut entries: Vec<(String, Option<PathBuf>)> = methods.into_iter().map(|m| (m, None)).collect();
            for path in models {
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
                entries.push((name, Some(path)));
            }
            cli::compare(&entries, data, &camera, options, &device, record, json)
        }
        Command::Bench { suite, repeats, json: _, part, model, file, create, interleave, device } => {
            cli::bench(suite, repeats, &part, model.as_deref(), &cli::LargeBench { file, create_gib: create, interleave }, &device)
        }
    }
}
