//! Which NVIDIA driver a CUDA image needs: the floor of each CUDA major version (CUDA's minor
//! version compatibility lets a binary built with any 12.x run on the 12.0 floor, and so on), and
//! the CUDA version an image's tag names. Pure data; the doctor check that uses it is in the
//! parent module.

use super::parse::Version;

/// The CUDA major version of the pipeline's GPU image: `pipeline/Dockerfile` builds it with the
/// CUDA 13.0 toolchain and carries CUDA 13 runtime libraries.
pub const PIPELINE_CUDA_MAJOR: u64 = 13;

/// The oldest Linux driver that runs binaries of CUDA `major` (the ".0 GA" rows of the CUDA
/// toolkit release notes' driver table; minor version compatibility covers the later minors).
pub fn driver_floor(major: u64) -> Option<Version> {
    match major {
        11 => Some(Version::new(450, 80, 2)),
        12 => Some(Version::new(525, 60, 13)),
        13 => Some(Version::new(580, 65, 6)),
        _ => None,
    }
}

/// The CUDA major version an image's tag names (`vectoradd-cuda12.5.0-ubuntu22.04`,
/// `12.5.0-base-ubuntu22.04` of an `nvidia/cuda` image), if it names one.
pub fn cuda_major_of_image(image: &str) -> Option<u64> {
    let tag = image.rsplit_once(':').map(|(_, t)| t)?;
    let digits = |s: &str| -> Option<u64> {
        let n: String = s.chars().take_while(char::is_ascii_digit).collect();
        n.parse().ok()
    };
    if let Some(i) = tag.find("cuda") {
        return digits(&tag[i + 4..]);
    }
    let repository = image.rsplit_once(':').map(|(r, _)| r)?;
    if repository.ends_with("/cuda") {
        return digits(tag);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_follow_the_cuda_driver_table() {
        assert_eq!(driver_floor(12), Some(Version::new(525, 60, 13)));
        assert_eq!(driver_floor(13), Some(Version::new(580, 65, 6)));
        assert_eq!(driver_floor(9), None);
        let r570 = Version::parse("570.172.08").unwrap();
        assert!(r570 >= driver_floor(12).unwrap());
        assert!(r570 < driver_floor(PIPELINE_CUDA_MAJOR).unwrap());
    }

    #[test]
    fn the_cuda_version_comes_from_the_tag() {
        assert_eq!(
            cuda_major_of_image("nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04"),
            Some(12)
        );
        assert_eq!(
            cuda_major_of_image("nvidia/cuda:13.0.1-base-ubuntu24.04"),
            Some(13)
        );
        assert_eq!(cuda_major_of_image("localhost:5001/my-sample:1.0"), None);
        assert_eq!(cuda_major_of_image("busybox"), None);
    }
}
