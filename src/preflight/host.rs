//! Host checks of what users hit on the kind GPU path beyond the tools: WSL2 (refused), Docker's
//! CPUs and memory against the full platform's, the registry's host port, the toolkit handing
//! GPUs to any container that names them, and whether the driver runs the CUDA images kgf-up
//! starts. Each builds a [`Check`] from facts read by the caller or from one read of its own;
//! none changes the host.

use super::parse::{self, DockerInfo, Gpu, Version};
use super::{Check, Fix, Options, Status, check, cuda, host_cmd, read};
use crate::exec::{Cmd, Exec};

/// What the full kind-gpu platform needs of Docker (the GPU operator, Kubeflow Pipelines with its
/// database and Argo, KServe, KubeRay, cert-manager, MinIO, the Prometheus stack and the kind
/// control plane, about 40 pods, then the pipeline's steps): an estimate, not a measurement.
pub const PLATFORM_CPUS: u64 = 8;
pub const PLATFORM_MEMORY_GIB: u64 = 16;

/// WSL2 gives Linux its GPUs through `/dev/dxg` and Windows' driver, not `/dev/nvidia*`: the kind
/// GPU path (device nodes handed to node containers, the driver's params masked in them) cannot
/// work there.
pub fn wsl(opts: &Options, fail: Status) -> Check {
    let name = "not WSL2";
    let release = std::fs::read_to_string(opts.proc_sys.join("kernel/osrelease"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let dxg = opts.dev.join("dxg").exists();
    let needed = "a native Linux host: kind's GPU path hands /dev/nvidia* devices to node containers, which WSL2 does not have";
    if !dxg && !parse::is_wsl_kernel(&release) {
        let found = if release.is_empty() {
            "a Linux kernel".to_string()
        } else {
            format!("kernel {release}")
        };
        return check(name, Status::Ok, found, needed, None);
    }
    let mut signs = Vec::new();
    if !release.is_empty() {
        signs.push(format!("kernel {release}"));
    }
    if dxg {
        signs.push(format!("{} present", opts.dev.join("dxg").display()));
    }
    check(
        name,
        fail,
        format!("WSL2 ({})", signs.join(", ")),
        needed,
        Some(Fix::manual(
            "kgf-up does not support GPUs on WSL2: run it on a native Linux machine (or a Linux VM with the GPU passed through, with the rke2 profile); the sim profile runs here without GPUs",
        )),
    )
}

/// Docker's CPUs and memory (the host's, or Docker Desktop's VM's) against the full platform's.
pub fn resources(docker: Option<&DockerInfo>) -> Option<Check> {
    let info = docker.filter(|d| d.reachable())?;
    let (cpus, memory) = (info.cpus?, info.memory?);
    let gib = memory / (1 << 30);
    let short = cpus < PLATFORM_CPUS || gib < PLATFORM_MEMORY_GIB;
    Some(check(
        "docker CPUs and memory",
        if short { Status::Warn } else { Status::Ok },
        format!("{cpus} CPUs, {gib} GiB"),
        format!(
            "{PLATFORM_CPUS} CPUs and {PLATFORM_MEMORY_GIB} GiB for the full platform (fewer: pods stay Pending or are OOM-killed)"
        ),
        short.then(|| {
            Fix::manual(
                "give Docker more (Docker Desktop: Settings → Resources), or turn off components you do not need (components.NAME.enabled: false)",
            )
        }),
    ))
}

/// The registry's host port before the cluster exists: free, or published by kgf-up's own
/// registry container (reused); anything else would make the registry fail to start.
pub async fn registry_port(
    exec: &Exec,
    opts: &Options,
    docker: Option<&DockerInfo>,
) -> Option<Check> {
    let registry = &opts.kind.as_ref()?.registry;
    if !registry.enabled {
        return None;
    }
    let port = registry.host_port;
    let name = "registry host port";
    let needed = format!(
        "127.0.0.1:{port} free for the local registry, or held by its container {}",
        registry.name
    );
    let fix_port = format!(
        "set cluster.kind.registry.host_port to a free port, or free {port} (`ss -ltnp 'sport = :{port}'` shows who holds it)"
    );
    if docker.is_some_and(|d| d.reachable()) {
        let ps = read(
            exec,
            Cmd::new("docker").args(["ps", "--format", "{{.Names}}\t{{.Ports}}"]),
        )
        .await
        .unwrap_or_default();
        let holders = parse::containers_publishing(&ps, port);
        if holders.contains(&registry.name) {
            return Some(check(
                name,
                Status::Ok,
                format!("{port} published by {} (kgf-up reuses it)", registry.name),
                needed,
                None,
            ));
        }
        if !holders.is_empty() {
            return Some(check(
                name,
                Status::Fail,
                format!("{port} published by container {}", holders.join(", ")),
                needed,
                Some(Fix::manual(format!(
                    "docker rm -f {}, or {fix_port}",
                    holders.join(" ")
                ))),
            ));
        }
    }
    Some(match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => check(name, Status::Ok, format!("{port} free"), needed, None),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => check(
            name,
            Status::Fail,
            format!("another process listens on 127.0.0.1:{port}"),
            needed,
            Some(Fix::manual(fix_port)),
        ),
        Err(e) => check(
            name,
            Status::Warn,
            format!("cannot tell: binding 127.0.0.1:{port} failed: {e}"),
            needed,
            Some(Fix::manual(fix_port)),
        ),
    })
}

/// `accept-nvidia-visible-devices-envvar-when-unprivileged = false`: with nvidia as docker's
/// default runtime, the default (true) gives any container that sets `NVIDIA_VISIBLE_DEVICES=all`
/// (every CUDA image does) every GPU of the host. kind nodes ask for theirs by volume mount,
/// which this setting leaves alone.
pub fn envvar(opts: &Options) -> Check {
    let name = "GPUs only by request";
    let needed = format!(
        "accept-nvidia-visible-devices-envvar-when-unprivileged = false in {} (otherwise any container of a CUDA image gets every GPU)",
        opts.toolkit_config.display()
    );
    // The runtime reads its config at each container start: nothing to restart.
    let fix = Fix::auto(
        opts.root,
        vec![host_cmd(opts.root, "nvidia-ctk").args([
            "config",
            "--set",
            "accept-nvidia-visible-devices-envvar-when-unprivileged=false",
            "--in-place",
        ])],
        false,
    );
    match std::fs::read_to_string(&opts.toolkit_config) {
        Ok(text) if !parse::toolkit_accepts_envvar_unprivileged(&text) => {
            check(name, Status::Ok, "false", needed, None)
        }
        Ok(_) => check(name, Status::Warn, "true (the default)", needed, Some(fix)),
        Err(e) => check(
            name,
            Status::Warn,
            format!("cannot read {}: {e}", opts.toolkit_config.display()),
            needed,
            None,
        ),
    }
}

/// Whether the driver runs the CUDA images kgf-up starts: the CUDA sample `verify` runs (its
/// CUDA version from its tag) and the pipeline's GPU image (CUDA 13). The sample failing fails
/// `verify`; the pipeline's model steps fall back to the CPU (`--device auto`).
pub fn driver(gpus: &[Gpu], opts: &Options) -> Option<Check> {
    let shown = &gpus.first()?.driver_version;
    let name = "driver for the CUDA images";
    let Some(driver) = Version::parse(shown) else {
        return Some(check(
            name,
            Status::Warn,
            format!("driver {shown:?}, not a version kgf-up can compare"),
            "a driver version like 580.95.05",
            None,
        ));
    };
    // (what, its CUDA major, the status when the driver is too old for it)
    let mut images: Vec<(String, Option<u64>, Status)> = Vec::new();
    if let Some(image) = &opts.smoke_image {
        let short = if opts.needs_gpu {
            Status::Fail
        } else {
            Status::Warn
        };
        images.push((
            format!("the CUDA sample verify runs ({image})"),
            cuda::cuda_major_of_image(image),
            short,
        ));
    }
    if opts.pipeline_gpu {
        // The steps fall back to the CPU: slow, not broken.
        images.push((
            "the pipeline's model steps on the GPU".into(),
            Some(cuda::PIPELINE_CUDA_MAJOR),
            Status::Warn,
        ));
    }
    if images.is_empty() {
        return None;
    }
    let mut found = Vec::new();
    let mut needed = Vec::new();
    let mut status = Status::Ok;
    let mut wanted: Option<Version> = None;
    for (what, major, short) in images {
        let Some((major, floor)) = major.and_then(|m| Some((m, cuda::driver_floor(m)?))) else {
            found.push(format!("cannot tell which driver {what} needs"));
            continue;
        };
        needed.push(format!("{floor} or later for {what} (CUDA {major})"));
        if driver >= floor {
            found.push(format!("runs {what}"));
        } else {
            found.push(format!("too old for {what}"));
            status = status.max(short);
            wanted = wanted.max(Some(floor));
        }
    }
    let fix = wanted.map(|f| {
        Fix::manual(format!(
            "install an NVIDIA driver of the {} branch or later (Ubuntu: sudo ubuntu-drivers install nvidia:{} && sudo reboot)",
            f.major, f.major
        ))
    });
    Some(check(
        name,
        status,
        format!("driver {shown}: {}", found.join("; ")),
        needed.join("; "),
        fix,
    ))
}
