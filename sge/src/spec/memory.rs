//! Memory amounts for the Grid Engine `mem_free` request.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::spec::error::MemoryError;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// A memory amount, requested from Grid Engine as `-l mem_free=<amount>`.
///
/// Parsed from strings such as `"8GB"`, `"8G"`, `"512MB"`, `"512M"` or `"1T"`.
/// Units are case-insensitive and binary, as Grid Engine's upper-case
/// multipliers are: `K`/`KB` = 2^10, `M`/`MB` = 2^20, `G`/`GB` = 2^30 and
/// `T`/`TB` = 2^40 bytes (`KiB`, `MiB`, ... are accepted too). A unit is
/// required and the number must be a whole number greater than zero.
///
/// # `mem_free` is checked against the host
///
/// `mem_free` is a *load value*: at scheduling time Grid Engine compares the
/// request with the free memory each execution host currently reports. It is
/// not a limit on the job. A `mem_free` above what any host can offer is never
/// satisfied, so the job stays in the `qw` (queued, waiting) state forever
/// without an error. Use [`Memory::warn_if_above_host`] to catch this.
///
/// The value is stored as bytes, so `"1024M"` equals `"1G"`. It renders (via
/// [`fmt::Display`] and [`Memory::sge_request`]) in the largest of the units
/// `K`, `M`, `G` that divides it exactly; terabytes are rendered as gigabytes
/// (`"1T"` becomes `1024G`) because not every Grid Engine release accepts a
/// `T` multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Memory {
    bytes: u64,
}

impl Memory {
    /// A memory amount of exactly `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Self { bytes }
    }

    /// A memory amount of `mib` mebibytes (`<mib>M`), saturating on overflow.
    pub const fn mib(mib: u64) -> Self {
        Self::from_bytes(mib.saturating_mul(MIB))
    }

    /// A memory amount of `gib` gibibytes (`<gib>G`), saturating on overflow.
    pub const fn gib(gib: u64) -> Self {
        Self::from_bytes(gib.saturating_mul(GIB))
    }

    /// The amount in bytes.
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The Grid Engine resource request for this amount, e.g. `mem_free=8G`.
    ///
    /// Passed to `qsub` as `-l mem_free=8G`; see the type documentation for
    /// why a request above the hosts' memory waits in `qw` forever.
    pub fn sge_request(&self) -> String {
        format!("mem_free={self}")
    }

    /// A warning if this request is above `host_bytes`, the memory a host offers.
    ///
    /// `label` is the queue spec label the request belongs to; the warning
    /// names it. Returns `None` when the request fits. A `mem_free` request
    /// above what every host offers is never scheduled: the job waits in `qw`
    /// forever.
    pub fn warn_if_above_host(&self, label: &str, host_bytes: u64) -> Option<String> {
        (self.bytes > host_bytes).then(|| {
            format!(
                "queue spec [{label}]: memory request {} is above the {} ({host_bytes} bytes) \
                 the host offers; Grid Engine checks mem_free against the host at scheduling \
                 time, so such a job waits in qw forever",
                self.sge_request(),
                Memory::from_bytes(host_bytes),
            )
        })
    }
}

impl fmt::Display for Memory {
    /// Renders the amount as Grid Engine expects it, e.g. `8G`, `512M` or
    /// plain bytes if no unit divides the amount exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bytes;
        if b == 0 {
            return f.write_str("0");
        }
        // The units are powers of two: a unit 2^shift divides `b` exactly
        // when `b` has at least `shift` trailing zero bits.
        for (shift, unit) in [(30, 'G'), (20, 'M'), (10, 'K')] {
            if b.trailing_zeros() >= shift {
                return write!(f, "{}{unit}", b >> shift);
            }
        }
        write!(f, "{b}")
    }
}

impl FromStr for Memory {
    type Err = MemoryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(MemoryError::Empty);
        }
        let digits_end = input
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(input.len());
        let (number, unit) = input.split_at(digits_end);
        if number.is_empty() {
            return Err(MemoryError::InvalidNumber {
                input: input.to_owned(),
            });
        }
        let multiplier =
            unit_multiplier(unit.trim_start()).ok_or_else(|| MemoryError::InvalidUnit {
                input: input.to_owned(),
            })?;
        let overflow = || MemoryError::Overflow {
            input: input.to_owned(),
        };
        let amount: u64 = number.parse().map_err(|_| overflow())?;
        if amount == 0 {
            return Err(MemoryError::Zero {
                input: input.to_owned(),
            });
        }
        let bytes = amount.checked_mul(multiplier).ok_or_else(overflow)?;
        Ok(Self { bytes })
    }
}

/// The byte multiplier of a unit such as `G`, `gb` or `GiB`.
fn unit_multiplier(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_uppercase();
    let prefix = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    match prefix {
        "K" => Some(KIB),
        "M" => Some(MIB),
        "G" => Some(GIB),
        "T" => Some(TIB),
        _ => None,
    }
}

impl TryFrom<String> for Memory {
    type Error = MemoryError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Memory> for String {
    fn from(memory: Memory) -> Self {
        memory.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(s: &str) -> Memory {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_units_case_insensitively() {
        for s in ["8GB", "8G", "8gb", "8g", "8Gb", "8GiB", " 8 GB "] {
            assert_eq!(mem(s).bytes(), 8 * GIB, "{s}");
        }
        for s in ["512MB", "512M", "512m", "512mb", "512MiB"] {
            assert_eq!(mem(s).bytes(), 512 * MIB, "{s}");
        }
        assert_eq!(mem("1T").bytes(), TIB);
        assert_eq!(mem("1tb").bytes(), TIB);
        assert_eq!(mem("64K").bytes(), 64 * KIB);
    }

    #[test]
    fn renders_as_mem_free() {
        assert_eq!(mem("8GB").sge_request(), "mem_free=8G");
        assert_eq!(mem("512MB").sge_request(), "mem_free=512M");
        assert_eq!(mem("1536M").sge_request(), "mem_free=1536M");
        assert_eq!(mem("1024M").sge_request(), "mem_free=1G");
        assert_eq!(mem("1T").sge_request(), "mem_free=1024G");
        assert_eq!(mem("3k").to_string(), "3K");
        assert_eq!(Memory::from_bytes(1000).to_string(), "1000");
        assert_eq!(Memory::gib(12), mem("12GB"));
        assert_eq!(Memory::mib(512), mem("512M"));
    }

    #[test]
    fn rejects_bad_strings() {
        assert_eq!("".parse::<Memory>(), Err(MemoryError::Empty));
        assert!(matches!(
            "GB".parse::<Memory>(),
            Err(MemoryError::InvalidNumber { .. })
        ));
        assert!(matches!(
            "-1G".parse::<Memory>(),
            Err(MemoryError::InvalidNumber { .. })
        ));
        for s in ["8", "8X", "8GBB", "1.5G", "8 G B"] {
            let err = s.parse::<Memory>().unwrap_err();
            assert!(matches!(err, MemoryError::InvalidUnit { .. }), "{s}: {err}");
            assert!(err.to_string().contains(s.trim()), "{err}");
        }
        assert!(matches!(
            "0G".parse::<Memory>(),
            Err(MemoryError::Zero { .. })
        ));
        assert!(matches!(
            "99999999999T".parse::<Memory>(),
            Err(MemoryError::Overflow { .. })
        ));
        assert!(matches!(
            "99999999999999999999999G".parse::<Memory>(),
            Err(MemoryError::Overflow { .. })
        ));
    }

    #[test]
    fn warns_only_above_host() {
        let m = mem("12GB");
        assert_eq!(m.warn_if_above_host("gpu", 16 * GIB), None);
        assert_eq!(m.warn_if_above_host("gpu", 12 * GIB), None);
        let warning = m.warn_if_above_host("gpu", 8 * GIB).unwrap();
        assert!(warning.contains("[gpu]"), "{warning}");
        assert!(warning.contains("mem_free=12G"), "{warning}");
        assert!(warning.contains("8G"), "{warning}");
        assert!(warning.contains("qw"), "{warning}");
    }

    #[test]
    fn serde_round_trips_as_string() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Wrap {
            memory: Memory,
        }
        let w: Wrap = toml::from_str("memory = \"8GB\"").unwrap();
        assert_eq!(w.memory, Memory::gib(8));
        assert_eq!(toml::to_string(&w).unwrap().trim(), "memory = \"8G\"");
        let err = toml::from_str::<Wrap>("memory = \"8X\"").unwrap_err();
        assert!(err.to_string().contains("8X"), "{err}");
    }
}
