//! Capture files as a byte source: reads pcap and pcapng files frame by frame.
//!
//! This is the offline counterpart of the TC capture: [`PcapReader`] yields link-layer
//! frames with their capture timestamps, [`super::packet::parse`] turns each into a
//! [`Segment`], and [`read_segments`] does both for a file path, so a recorded capture
//! can drive the same reassembler and HTTP framing as live traffic.
//!
//! Formats: classic pcap (microsecond magic 0xa1b2c3d4 and nanosecond magic 0xa1b23c4d,
//! in either byte order) and pcapng (any number of sections, each with its own byte
//! order; Interface Description, Enhanced Packet, Simple Packet and the obsolete Packet
//! blocks are read, every other block type is skipped by its length).
//!
//! Link types: a classic pcap file with a link type [`LinkType::from_pcap`] does not know
//! fails in [`PcapReader::new`] with [`PcapError::UnsupportedLinkType`]. In pcapng each
//! interface has its own link type: packets of an unsupported interface are skipped and
//! counted ([`PcapReader::unsupported_frames`]; [`read_segments`] counts them as
//! malformed), unless no interface of the section is supported, in which case its first
//! packet fails with `UnsupportedLinkType` (reading it all to get nothing helps nobody).
//!
//! Corrupt input gives [`PcapError::Format`] naming the byte offset, never a panic; a
//! file cut in the middle of a record delivers every complete record first.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use super::packet::{parse, LinkType, Skipped};
use crate::capture::Segment;

/// Largest captured length of one record (or pcapng block) we accept: 256 MiB. Real
/// frames are far smaller (tcpdump's largest snapshot length is 256 KiB), so the bound
/// only has to stop a corrupt length field from making us allocate gigabytes; it is
/// generous so that no real capture, with whatever snapshot length, is refused.
pub const MAX_RECORD_LEN: u32 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("reading the capture file: {0}")]
    Io(#[from] std::io::Error),
    /// What is wrong and at which byte offset of the file.
    #[error("malformed capture file: {0}")]
    Format(String),
    #[error("unsupported link type {0}")]
    UnsupportedLinkType(u32),
}

/// One frame: link type, capture time in ns since the epoch, the captured bytes.
type Frame = (LinkType, u64, Vec<u8>);

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
/// The pcapng Section Header Block type reads the same in both byte orders ("\n\r\r\n").
const SHB_TYPE: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const IDB_TYPE: u32 = 1;
const PB_TYPE: u32 = 2;
const SPB_TYPE: u32 = 3;
const EPB_TYPE: u32 = 6;
const OPT_ENDOFOPT: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }

    fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }
}

/// Typed, bounds-checked reads from a header or block body; a short body is a format
/// error naming the block's offset.
struct Fields<'a> {
    b: &'a [u8],
    e: Endian,
    what: &'static str,
    at: u64,
}

impl Fields<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> Result<[u8; N], PcapError> {
        self.b
            .get(off..off.saturating_add(N))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| {
                format_err(format!(
                    "{} at byte offset {} is too short ({} bytes) for its fields",
                    self.what,
                    self.at,
                    self.b.len()
                ))
            })
    }

    fn u16(&self, off: usize) -> Result<u16, PcapError> {
        Ok(self.e.u16(self.bytes(off)?))
    }

    fn u32(&self, off: usize) -> Result<u32, PcapError> {
        Ok(self.e.u32(self.bytes(off)?))
    }
}

fn format_err(msg: String) -> PcapError {
    PcapError::Format(msg)
}

/// pcapng if_tsresol: units of 10^-n or 2^-n seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TsResol {
    Pow10(u8),
    Pow2(u8),
}

impl TsResol {
    /// Converts a timestamp in these units to nanoseconds, saturating.
    fn to_ns(self, ticks: u64) -> u64 {
        // u128: 2^64 ticks * 10^9 fits with room to spare, and 10^38 still fits, so
        // no resolution a file can declare overflows before the division.
        let t = u128::from(ticks) * 1_000_000_000;
        let ns = match self {
            TsResol::Pow10(n) if n <= 38 => t / 10u128.pow(u32::from(n)),
            TsResol::Pow10(_) => 0,
            TsResol::Pow2(n) => t.checked_shr(u32::from(n)).unwrap_or(0),
        };
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// A pcapng interface, from its Interface Description Block.
#[derive(Clone, Debug)]
struct Interface {
    code: u32,
    link: Option<LinkType>,
    snaplen: u32,
    resol: TsResol,
    /// if_tsoffset: seconds to add to every timestamp of the interface.
    offset_s: i64,
}

enum Format {
    Pcap {
        endian: Endian,
        /// Nanoseconds per unit of the record's fractional timestamp (1000 or 1).
        frac_ns: u64,
        link: LinkType,
    },
    PcapNg {
        endian: Endian,
        interfaces: Vec<Interface>,
    },
}

/// Reads frames from a pcap or pcapng stream. Reads are small (16-byte record headers),
/// so give it a buffered reader ([`read_segments`] does).
pub struct PcapReader<R: Read> {
    r: R,
    /// File offset of the next unread byte, for error messages.
    pos: u64,
    format: Format,
    unsupported: u64,
    /// Set after an error: the position is then unknown, so the reader stops.
    failed: bool,
}

impl<R: Read> PcapReader<R> {
    /// Reads the file header; detects the format from the first 4 bytes.
    pub fn new(r: R) -> Result<Self, PcapError> {
        let mut reader = PcapReader {
            r,
            pos: 0,
            format: Format::PcapNg {
                endian: Endian::Little,
                interfaces: Vec::new(),
            },
            unsupported: 0,
            failed: false,
        };
        let mut magic = [0u8; 4];
        reader.fill_exact(&mut magic, "file header", 0)?;
        if magic == SHB_TYPE {
            reader.read_shb(0)?;
        } else {
            reader.format = reader.read_pcap_header(magic)?;
        }
        Ok(reader)
    }

    /// Next frame: (link type, timestamp in ns since the epoch, frame bytes). None at a
    /// clean end of file. After an error, every later call returns None.
    pub fn next_frame(&mut self) -> Result<Option<(LinkType, u64, Vec<u8>)>, PcapError> {
        if self.failed {
            return Ok(None);
        }
        let result = match self.format {
            Format::Pcap {
                endian,
                frac_ns,
                link,
            } => self.next_pcap(endian, frac_ns, link),
            Format::PcapNg { .. } => self.next_pcapng(),
        };
        self.failed = result.is_err();
        result
    }

    /// pcapng packets skipped so far because their interface's link type is unsupported.
    pub fn unsupported_frames(&self) -> u64 {
        self.unsupported
    }

    /// Fills `buf`. Ok(false) if the file ends before its first byte (a clean end between
    /// records); a format error if it ends partway.
    fn fill(&mut self, buf: &mut [u8], what: &str, start: u64) -> Result<bool, PcapError> {
        let mut n = 0;
        while n < buf.len() {
            match self.r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.pos += n as u64;
        if n == 0 && !buf.is_empty() {
            return Ok(false);
        }
        if n < buf.len() {
            return Err(cut(what, start, self.pos));
        }
        Ok(true)
    }

    /// Fills `buf`; any shortfall, even at its first byte, is a format error.
    fn fill_exact(&mut self, buf: &mut [u8], what: &str, start: u64) -> Result<(), PcapError> {
        if self.fill(buf, what, start)? {
            Ok(())
        } else {
            Err(cut(what, start, self.pos))
        }
    }

    /// Reads `len` bytes into a new vector. Grows with the data actually read rather than
    /// allocating `len` up front, so a corrupt length near the cap costs nothing.
    fn read_vec(&mut self, len: u32, what: &str, start: u64) -> Result<Vec<u8>, PcapError> {
        let mut v = Vec::new();
        let n = (&mut self.r).take(u64::from(len)).read_to_end(&mut v)?;
        self.pos += n as u64;
        if n < len as usize {
            return Err(cut(what, start, self.pos));
        }
        Ok(v)
    }

    /// The rest of the 24-byte classic pcap header, after the magic.
    fn read_pcap_header(&mut self, magic: [u8; 4]) -> Result<Format, PcapError> {
        let (endian, frac_ns) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
            (PCAP_MAGIC_US, _) => (Endian::Little, 1000),
            (_, PCAP_MAGIC_US) => (Endian::Big, 1000),
            (PCAP_MAGIC_NS, _) => (Endian::Little, 1),
            (_, PCAP_MAGIC_NS) => (Endian::Big, 1),
            _ => {
                return Err(format_err(format!(
                    "not a pcap or pcapng file: magic {magic:02x?} at byte offset 0"
                )))
            }
        };
        let mut rest = [0u8; 20];
        self.fill_exact(&mut rest, "pcap file header", 0)?;
        let f = Fields {
            b: &rest,
            e: endian,
            what: "pcap file header",
            at: 0,
        };
        // LinkType field: the link type is the low 16 bits; the high bits may carry the
        // FCS length, which does not matter since payloads are cut by the IP length.
        let code = f.u32(16)? & 0xffff;
        let link = LinkType::from_pcap(code).ok_or(PcapError::UnsupportedLinkType(code))?;
        Ok(Format::Pcap {
            endian,
            frac_ns,
            link,
        })
    }

    fn next_pcap(
        &mut self,
        e: Endian,
        frac_ns: u64,
        link: LinkType,
    ) -> Result<Option<Frame>, PcapError> {
        let start = self.pos;
        let mut h = [0u8; 16];
        if !self.fill(&mut h, "pcap record header", start)? {
            return Ok(None);
        }
        let f = Fields {
            b: &h,
            e,
            what: "pcap record header",
            at: start,
        };
        let (sec, frac, caplen) = (f.u32(0)?, f.u32(4)?, f.u32(8)?);
        if caplen > MAX_RECORD_LEN {
            return Err(format_err(format!(
                "pcap record at byte offset {start} claims {caplen} captured bytes \
                 (limit {MAX_RECORD_LEN})"
            )));
        }
        let data = self.read_vec(caplen, "pcap record", start)?;
        // u32 seconds * 10^9 + a fraction stays far below u64::MAX.
        let ts = u64::from(sec) * 1_000_000_000 + u64::from(frac) * frac_ns;
        Ok(Some((link, ts, data)))
    }

    /// Reads a Section Header Block whose 4 type bytes were consumed at `start`, and
    /// starts a new section: byte order from its magic, no interfaces yet.
    fn read_shb(&mut self, start: u64) -> Result<(), PcapError> {
        let mut h = [0u8; 8];
        self.fill_exact(&mut h, "pcapng section header", start)?;
        let bom = [h[4], h[5], h[6], h[7]];
        let endian = if u32::from_le_bytes(bom) == BYTE_ORDER_MAGIC {
            Endian::Little
        } else if u32::from_be_bytes(bom) == BYTE_ORDER_MAGIC {
            Endian::Big
        } else {
            return Err(format_err(format!(
                "pcapng section header at byte offset {start} has byte-order magic {bom:02x?}"
            )));
        };
        let total = endian.u32([h[0], h[1], h[2], h[3]]);
        // Type, length, magic, version (4), section length (8), trailing length.
        let body = self.read_block_rest(start, total, 28, 12, endian)?;
        let f = Fields {
            b: &body,
            e: endian,
            what: "pcapng section header",
            at: start,
        };
        let major = f.u16(0)?;
        if major != 1 {
            return Err(format_err(format!(
                "pcapng section at byte offset {start} has version {major}, only 1 is known"
            )));
        }
        self.format = Format::PcapNg {
            endian,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    /// Reads the rest of a block of `total` bytes of which `consumed` were read, checks the
    /// trailing copy of the length, and returns the body (without the trailing length).
    fn read_block_rest(
        &mut self,
        start: u64,
        total: u32,
        min: u32,
        consumed: u32,
        e: Endian,
    ) -> Result<Vec<u8>, PcapError> {
        if total < min || total > MAX_RECORD_LEN {
            return Err(format_err(format!(
                "pcapng block at byte offset {start} has length {total} (must be {min}..={MAX_RECORD_LEN})"
            )));
        }
        let mut body = self.read_vec(total - consumed, "pcapng block", start)?;
        let trailer = body.split_off(body.len() - 4);
        let trailer = e.u32([trailer[0], trailer[1], trailer[2], trailer[3]]);
        if trailer != total {
            return Err(format_err(format!(
                "pcapng block at byte offset {start}: length {total} at its start but {trailer} at its end"
            )));
        }
        Ok(body)
    }

    fn next_pcapng(&mut self) -> Result<Option<Frame>, PcapError> {
        loop {
            let start = self.pos;
            let mut ty = [0u8; 4];
            if !self.fill(&mut ty, "pcapng block header", start)? {
                return Ok(None);
            }
            if ty == SHB_TYPE {
                self.read_shb(start)?;
                continue;
            }
            let Format::PcapNg { endian, .. } = self.format else {
                return Ok(None);
            };
            let mut len = [0u8; 4];
            self.fill_exact(&mut len, "pcapng block header", start)?;
            let body = self.read_block_rest(start, endian.u32(len), 12, 8, endian)?;
            let f = Fields {
                b: &body,
                e: endian,
                what: "pcapng block",
                at: start,
            };
            let frame = match endian.u32(ty) {
                IDB_TYPE => {
                    self.add_interface(&f)?;
                    None
                }
                EPB_TYPE => {
                    let if_id = f.u32(0)?;
                    self.packet(&f, if_id, 20, f.u32(12)?)?
                }
                // The obsolete Packet Block: a 16-bit interface id and drop count, then
                // the same fields at the same offsets as an Enhanced Packet Block.
                PB_TYPE => {
                    let if_id = u32::from(f.u16(0)?);
                    self.packet(&f, if_id, 20, f.u32(12)?)?
                }
                SPB_TYPE => self.simple_packet(&f)?,
                _ => None,
            };
            if frame.is_some() {
                return Ok(frame);
            }
        }
    }

    fn interfaces(&self) -> &[Interface] {
        match &self.format {
            Format::PcapNg { interfaces, .. } => interfaces,
            Format::Pcap { .. } => &[],
        }
    }

    fn add_interface(&mut self, f: &Fields<'_>) -> Result<(), PcapError> {
        let code = u32::from(f.u16(0)?);
        let mut iface = Interface {
            code,
            link: LinkType::from_pcap(code),
            snaplen: f.u32(4)?,
            resol: TsResol::Pow10(6),
            offset_s: 0,
        };
        read_idb_options(f, &mut iface)?;
        if let Format::PcapNg { interfaces, .. } = &mut self.format {
            interfaces.push(iface);
        }
        Ok(())
    }

    /// An EPB/PB: interface `if_id`, 64-bit timestamp at 4 (high word first), `caplen`
    /// bytes of packet at `data_off`.
    fn packet(
        &mut self,
        f: &Fields<'_>,
        if_id: u32,
        data_off: usize,
        caplen: u32,
    ) -> Result<Option<Frame>, PcapError> {
        let iface = self.interface(f, if_id)?;
        let ticks = (u64::from(f.u32(4)?) << 32) | u64::from(f.u32(8)?);
        let ts = apply_offset(iface.resol.to_ns(ticks), iface.offset_s);
        let data = packet_data(f, data_off, caplen as usize)?;
        self.frame(&iface, ts, data)
    }

    /// An SPB: no interface id (always interface 0), no timestamp, and no captured length:
    /// it is the original length cut to the interface's snaplen (0: none) and the block.
    fn simple_packet(&mut self, f: &Fields<'_>) -> Result<Option<Frame>, PcapError> {
        let iface = self.interface(f, 0)?;
        let mut caplen = f.u32(0)? as usize;
        if iface.snaplen != 0 {
            caplen = caplen.min(iface.snaplen as usize);
        }
        caplen = caplen.min(f.b.len().saturating_sub(4));
        let data = packet_data(f, 4, caplen)?;
        self.frame(&iface, 0, data)
    }

    fn interface(&self, f: &Fields<'_>, if_id: u32) -> Result<Interface, PcapError> {
        let interfaces = self.interfaces();
        interfaces.get(if_id as usize).cloned().ok_or_else(|| {
            format_err(format!(
                "pcapng packet at byte offset {} names interface {if_id}, but its section \
                 describes {}",
                f.at,
                interfaces.len()
            ))
        })
    }

    /// The frame of a packet on `iface`, or None (counted) if its link type is unsupported.
    fn frame(
        &mut self,
        iface: &Interface,
        ts: u64,
        data: Vec<u8>,
    ) -> Result<Option<Frame>, PcapError> {
        if let Some(link) = iface.link {
            return Ok(Some((link, ts, data)));
        }
        if self.interfaces().iter().all(|i| i.link.is_none()) {
            return Err(PcapError::UnsupportedLinkType(iface.code));
        }
        self.unsupported += 1;
        Ok(None)
    }
}

fn cut(what: &str, start: u64, end: u64) -> PcapError {
    format_err(format!(
        "{what} at byte offset {start} is cut short: the file ends at byte offset {end}"
    ))
}

fn packet_data(f: &Fields<'_>, off: usize, caplen: usize) -> Result<Vec<u8>, PcapError> {
    f.b.get(off..off.saturating_add(caplen))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            format_err(format!(
                "pcapng packet at byte offset {} claims {caplen} captured bytes, more than its \
                 block holds",
                f.at
            ))
        })
}

fn apply_offset(ns: u64, offset_s: i64) -> u64 {
    let t = i128::from(ns) + i128::from(offset_s) * 1_000_000_000;
    u64::try_from(t.max(0)).unwrap_or(u64::MAX)
}

/// IDB options start at 8: (code u16, length u16, value padded to 4 bytes)*, ending at
/// opt_endofopt or the end of the body.
fn read_idb_options(f: &Fields<'_>, iface: &mut Interface) -> Result<(), PcapError> {
    let mut off = 8;
    while off + 4 <= f.b.len() {
        let (code, len) = (f.u16(off)?, usize::from(f.u16(off + 2)?));
        let value = off + 4;
        off = value + len.div_ceil(4) * 4;
        if off > f.b.len() {
            return Err(format_err(format!(
                "pcapng interface block at byte offset {}: option {code} runs past the block",
                f.at
            )));
        }
        match (code, len) {
            (OPT_ENDOFOPT, _) => break,
            (OPT_IF_TSRESOL, 1) => {
                let [v] = f.bytes::<1>(value)?;
                iface.resol = if v & 0x80 == 0 {
                    TsResol::Pow10(v)
                } else {
                    TsResol::Pow2(v & 0x7f)
                };
            }
            (OPT_IF_TSOFFSET, 8) => {
                let b = f.bytes::<8>(value)?;
                iface.offset_s = match f.e {
                    Endian::Little => i64::from_le_bytes(b),
                    Endian::Big => i64::from_be_bytes(b),
                };
            }
            _ => {}
        }
    }
    Ok(())
}

/// Statistics of reading a file into segments.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PcapStats {
    pub frames: u64,
    pub segments: u64,
    /// Frames that are not IP, or IP but not TCP.
    pub skipped_not_tcp: u64,
    pub skipped_other_port: u64,
    pub fragments: u64,
    pub truncated: u64,
    /// Malformed headers, and pcapng packets on interfaces of unsupported link types.
    pub malformed: u64,
}

impl PcapStats {
    fn count(&mut self, skipped: Skipped) {
        let counter = match skipped {
            Skipped::NotIp | Skipped::NotTcp => &mut self.skipped_not_tcp,
            Skipped::OtherPort => &mut self.skipped_other_port,
            Skipped::Fragment => &mut self.fragments,
            Skipped::Truncated => &mut self.truncated,
            Skipped::Malformed => &mut self.malformed,
        };
        *counter += 1;
    }
}

/// Convenience: reads a whole file path, calling `f` for each Segment in file order and
/// counting into `stats`. On an error (a cut or corrupt file), the segments before it have
/// been delivered and `stats` counts them.
pub fn read_segments(
    path: &Path,
    ports: &[u16],
    stats: &mut PcapStats,
    mut f: impl FnMut(Segment),
) -> Result<(), PcapError> {
    let file = File::open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut reader = PcapReader::new(BufReader::new(file))?;
    while let Some((link, ts, frame)) = reader.next_frame()? {
        stats.frames += 1;
        match parse(link, &frame, ts, ports) {
            Ok(segment) => {
                stats.segments += 1;
                f(segment);
            }
            Err(skipped) => stats.count(skipped),
        }
    }
    stats.frames += reader.unsupported_frames();
    stats.malformed += reader.unsupported_frames();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::stream::Direction;

    fn reader(bytes: &[u8]) -> Result<PcapReader<Cursor<Vec<u8>>>, PcapError> {
        PcapReader::new(Cursor::new(bytes.to_vec()))
    }

    /// All frames, then the error that ended reading, if any.
    fn frames(bytes: &[u8]) -> (Vec<Frame>, Option<PcapError>) {
        let mut r = match reader(bytes) {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut out = Vec::new();
        loop {
            match r.next_frame() {
                Ok(Some(f)) => out.push(f),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn put32(v: &mut Vec<u8>, e: Endian, x: u32) {
        v.extend_from_slice(&match e {
            Endian::Little => x.to_le_bytes(),
            Endian::Big => x.to_be_bytes(),
        });
    }

    fn put16(v: &mut Vec<u8>, e: Endian, x: u16) {
        v.extend_from_slice(&match e {
            Endian::Little => x.to_le_bytes(),
            Endian::Big => x.to_be_bytes(),
        });
    }

    fn pcap_file(e: Endian, magic: u32, link: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        put32(&mut v, e, magic);
        put16(&mut v, e, 2);
        put16(&mut v, e, 4);
        put32(&mut v, e, 0);
        put32(&mut v, e, 0);
        put32(&mut v, e, 65535);
        put32(&mut v, e, link);
        for (sec, frac, data) in records {
            put32(&mut v, e, *sec);
            put32(&mut v, e, *frac);
            put32(&mut v, e, data.len() as u32);
            put32(&mut v, e, data.len() as u32);
            v.extend_from_slice(data);
        }
        v
    }

    /// A pcapng block: type, length, body padded to 4 bytes, length.
    fn block(e: Endian, ty: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().div_ceil(4) * 4;
        let total = (12 + padded) as u32;
        let mut v = Vec::new();
        put32(&mut v, e, ty);
        put32(&mut v, e, total);
        v.extend_from_slice(body);
        v.resize(8 + padded, 0);
        put32(&mut v, e, total);
        v
    }

    fn shb(e: Endian) -> Vec<u8> {
        let mut b = Vec::new();
        put32(&mut b, e, BYTE_ORDER_MAGIC);
        put16(&mut b, e, 1);
        put16(&mut b, e, 0);
        b.extend_from_slice(&[0xff; 8]); // section length -1: not given
        block(e, 0x0a0d_0d0a, &b)
    }

    fn idb(e: Endian, link: u16, snaplen: u32, tsresol: Option<u8>) -> Vec<u8> {
        let mut b = Vec::new();
        put16(&mut b, e, link);
        put16(&mut b, e, 0);
        put32(&mut b, e, snaplen);
        // An option we do not know (if_name), to be stepped over.
        put16(&mut b, e, 2);
        put16(&mut b, e, 2);
        b.extend_from_slice(b"lo\0\0");
        if let Some(r) = tsresol {
            put16(&mut b, e, OPT_IF_TSRESOL);
            put16(&mut b, e, 1);
            b.extend_from_slice(&[r, 0, 0, 0]);
        }
        put16(&mut b, e, OPT_ENDOFOPT);
        put16(&mut b, e, 0);
        block(e, IDB_TYPE, &b)
    }

    fn epb(e: Endian, if_id: u32, ticks: u64, data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        put32(&mut b, e, if_id);
        put32(&mut b, e, (ticks >> 32) as u32);
        put32(&mut b, e, ticks as u32);
        put32(&mut b, e, data.len() as u32);
        put32(&mut b, e, data.len() as u32);
        b.extend_from_slice(data);
        b.resize(b.len().div_ceil(4) * 4, 0);
        // An epb_flags option, then the end of options.
        put16(&mut b, e, 2);
        put16(&mut b, e, 4);
        put32(&mut b, e, 1);
        put32(&mut b, e, 0);
        block(e, EPB_TYPE, &b)
    }

    fn spb(e: Endian, orig_len: u32, data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        put32(&mut b, e, orig_len);
        b.extend_from_slice(data);
        block(e, SPB_TYPE, &b)
    }

    const T: u64 = 1_700_000_000;

    #[test]
    fn pcap_both_magics_both_byte_orders() {
        let recs: &[(u32, u32, &[u8])] =
            &[(T as u32, 123_456, b"first"), (T as u32 + 1, 7, b"2nd")];
        for e in [Endian::Little, Endian::Big] {
            let (f, err) = frames(&pcap_file(e, PCAP_MAGIC_US, 1, recs));
            assert!(err.is_none(), "{err:?}");
            assert_eq!(f.len(), 2);
            assert_eq!(
                f[0],
                (
                    LinkType::Ethernet,
                    T * 1_000_000_000 + 123_456_000,
                    b"first".to_vec()
                )
            );
            assert_eq!(
                f[1],
                (
                    LinkType::Ethernet,
                    (T + 1) * 1_000_000_000 + 7_000,
                    b"2nd".to_vec()
                )
            );
            let (f, err) = frames(&pcap_file(e, PCAP_MAGIC_NS, 113, recs));
            assert!(err.is_none(), "{err:?}");
            assert_eq!(
                f[0],
                (
                    LinkType::LinuxSll,
                    T * 1_000_000_000 + 123_456,
                    b"first".to_vec()
                )
            );
            assert_eq!(f[1].1, (T + 1) * 1_000_000_000 + 7);
        }
    }

    #[test]
    fn pcap_cut_file_delivers_complete_records_then_fails() {
        let file = pcap_file(
            Endian::Little,
            PCAP_MAGIC_US,
            1,
            &[(1, 0, b"aaaa"), (2, 0, b"bbbb")],
        );
        // The second record starts at 24 + 16 + 4 = 44.
        for cut_at in 45..file.len() {
            let (f, err) = frames(&file[..cut_at]);
            assert_eq!(f.len(), 1, "cut at {cut_at}");
            let msg = err.expect("an error").to_string();
            assert!(msg.contains("byte offset 44"), "{msg}");
        }
        // Cut exactly between records: a clean end.
        let (f, err) = frames(&file[..44]);
        assert_eq!((f.len(), err.is_none()), (1, true));
        // Cut in the file header.
        for cut_at in 0..24 {
            assert!(matches!(
                frames(&file[..cut_at]).1,
                Some(PcapError::Format(_))
            ));
        }
    }

    #[test]
    fn pcap_bad_headers() {
        let file = pcap_file(Endian::Little, PCAP_MAGIC_US, 127, &[]);
        assert!(matches!(
            reader(&file),
            Err(PcapError::UnsupportedLinkType(127))
        ));
        assert!(matches!(
            reader(b"GIF89a...................."),
            Err(PcapError::Format(_))
        ));
        // A record claiming 4 GiB: refused without allocating it.
        let mut file = pcap_file(Endian::Little, PCAP_MAGIC_US, 1, &[(1, 0, b"x")]);
        file[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        let (f, err) = frames(&file);
        assert!(f.is_empty());
        assert!(err.unwrap().to_string().contains("byte offset 24"));
        // FCS bits in the link-type field are ignored.
        let file = pcap_file(Endian::Big, PCAP_MAGIC_US, 0x1400_0001, &[(1, 0, b"x")]);
        assert_eq!(frames(&file).0[0].0, LinkType::Ethernet);
    }

    #[test]
    fn pcapng_blocks_and_resolutions() {
        let e = Endian::Little;
        let mut file = shb(e);
        file.extend(idb(e, 1, 0, None)); // if 0: Ethernet, microseconds
        file.extend(idb(e, 101, 0, Some(9))); // if 1: raw, nanoseconds
        file.extend(idb(e, 113, 0, Some(0x80 | 10))); // if 2: SLL, 2^-10 s
        file.extend(epb(e, 0, T * 1_000_000 + 5, b"eth"));
        file.extend(block(e, 5, &[0; 20])); // an Interface Statistics Block: skipped
        file.extend(epb(e, 1, T * 1_000_000_000 + 5, b"raw frame"));
        file.extend(epb(e, 2, (T << 10) | 512, b"sll"));
        file.extend(spb(e, 6, b"simple"));
        let (f, err) = frames(&file);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            f,
            vec![
                (
                    LinkType::Ethernet,
                    T * 1_000_000_000 + 5_000,
                    b"eth".to_vec()
                ),
                (LinkType::Raw, T * 1_000_000_000 + 5, b"raw frame".to_vec()),
                (
                    LinkType::LinuxSll,
                    T * 1_000_000_000 + 500_000_000,
                    b"sll".to_vec()
                ),
                (LinkType::Ethernet, 0, b"simple".to_vec()),
            ]
        );
    }

    #[test]
    fn pcapng_several_sections_and_byte_orders() {
        let mut file = shb(Endian::Big);
        file.extend(idb(Endian::Big, 1, 0, Some(3)));
        file.extend(epb(Endian::Big, 0, 1_500, b"big"));
        // The new section forgets interface 1 of the first and changes byte order.
        file.extend(shb(Endian::Little));
        file.extend(idb(Endian::Little, 276, 4, None));
        file.extend(spb(Endian::Little, 10, b"0123456789"));
        file.extend(epb(Endian::Little, 0, 2, b"little"));
        let (f, err) = frames(&file);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            f,
            vec![
                (LinkType::Ethernet, 1_500_000_000, b"big".to_vec()),
                // SPB: the original length cut to the interface's snaplen of 4.
                (LinkType::LinuxSll2, 0, b"0123".to_vec()),
                (LinkType::LinuxSll2, 2_000, b"little".to_vec()),
            ]
        );
        let mut bad = shb(Endian::Big);
        bad.extend(epb(Endian::Big, 0, 1, b"no interface"));
        assert!(frames(&bad)
            .1
            .unwrap()
            .to_string()
            .contains("byte offset 28"));
    }

    #[test]
    fn pcapng_cut_and_corrupt() {
        let e = Endian::Little;
        let mut file = shb(e);
        file.extend(idb(e, 1, 0, None));
        file.extend(epb(e, 0, 1, b"one"));
        let second = file.len();
        file.extend(epb(e, 0, 2, b"two"));
        for cut_at in second + 1..file.len() {
            let (f, err) = frames(&file[..cut_at]);
            assert_eq!(f.len(), 1, "cut at {cut_at}");
            let msg = err.expect("an error").to_string();
            assert!(msg.contains(&format!("byte offset {second}")), "{msg}");
        }
        // Mismatched trailing length.
        let mut bad = file.clone();
        let last = bad.len() - 4;
        bad[last] ^= 4;
        let (f, err) = frames(&bad);
        assert_eq!(f.len(), 1);
        assert!(matches!(err, Some(PcapError::Format(_))));
        // Captured length larger than the block.
        let mut bad = file.clone();
        bad[second + 20] = 200;
        assert_eq!(frames(&bad).0.len(), 1);
        // A huge block length is refused before reading.
        let mut bad = file.clone();
        bad[second + 4..second + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(frames(&bad)
            .1
            .unwrap()
            .to_string()
            .contains("length 4294967295"));
        // Wrong byte-order magic.
        let mut bad = file;
        bad[8] = 0;
        assert!(matches!(frames(&bad).1, Some(PcapError::Format(_))));
    }

    #[test]
    fn pcapng_unsupported_link_types() {
        let e = Endian::Little;
        let mut file = shb(e);
        file.extend(idb(e, 127, 0, None)); // radiotap
        file.extend(idb(e, 1, 0, None));
        file.extend(epb(e, 0, 1, b"wifi"));
        file.extend(epb(e, 1, 2, b"eth"));
        let mut r = reader(&file).unwrap();
        assert_eq!(r.next_frame().unwrap().unwrap().2, b"eth");
        assert!(r.next_frame().unwrap().is_none());
        assert_eq!(r.unsupported_frames(), 1);
        let mut only = shb(e);
        only.extend(idb(e, 127, 0, None));
        only.extend(epb(e, 0, 1, b"wifi"));
        assert!(matches!(
            frames(&only).1,
            Some(PcapError::UnsupportedLinkType(127))
        ));
    }

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(TsResol::Pow10(6).to_ns(3), 3_000);
        assert_eq!(TsResol::Pow10(0).to_ns(3), 3_000_000_000);
        assert_eq!(TsResol::Pow10(12).to_ns(3_000), 3);
        assert_eq!(TsResol::Pow10(127).to_ns(u64::MAX), 0);
        assert_eq!(TsResol::Pow10(0).to_ns(u64::MAX), u64::MAX);
        assert_eq!(TsResol::Pow2(1).to_ns(1), 500_000_000);
        assert_eq!(TsResol::Pow2(127).to_ns(u64::MAX), 0);
        assert_eq!(apply_offset(5, -1), 0);
        assert_eq!(apply_offset(5, 2), 2_000_000_005);
    }

    /// A TCP/IPv4 Ethernet frame from 10.0.0.1:40000 to 10.0.0.2:`dport`.
    fn eth_frame(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 0, 0x50, 0x18, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn read_segments_from_a_file() {
        let req = eth_frame(80, b"GET / HTTP/1.1\r\n\r\n");
        let other = eth_frame(443, b"tls");
        let mut cut = eth_frame(80, b"0123456789");
        cut.truncate(cut.len() - 3);
        let arp = [&[0u8; 12][..], &[0x08, 0x06], &[0; 28]].concat();
        let recs: &[(u32, u32, &[u8])] =
            &[(1, 2, &req), (1, 3, &other), (1, 4, &cut), (1, 5, &arp)];
        let path = std::env::temp_dir().join(format!("gor-pcap-test-{}.pcap", std::process::id()));
        std::fs::write(&path, pcap_file(Endian::Little, PCAP_MAGIC_US, 1, recs)).unwrap();
        let mut segs = Vec::new();
        let mut stats = PcapStats::default();
        let res = read_segments(&path, &[80], &mut stats, |s| segs.push(s));
        std::fs::remove_file(&path).unwrap();
        res.unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].ts_ns, 1_000_002_000);
        assert_eq!(segs[0].dir, Direction::ClientToServer);
        assert_eq!(&segs[0].payload[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            (
                stats.frames,
                stats.segments,
                stats.skipped_other_port,
                stats.truncated,
                stats.skipped_not_tcp
            ),
            (4, 1, 1, 1, 1)
        );
        let missing = read_segments(Path::new("/nonexistent/x.pcap"), &[80], &mut stats, |_| {});
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/x.pcap"));
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn never_panics_on_mutated_files() {
        let e = Endian::Little;
        let mut ng = shb(e);
        ng.extend(idb(e, 1, 0, Some(9)));
        ng.extend(epb(e, 0, 1, &eth_frame(80, b"x")));
        ng.extend(spb(e, 60, &eth_frame(80, b"y")));
        let classic = pcap_file(
            Endian::Big,
            PCAP_MAGIC_NS,
            1,
            &[(1, 1, &eth_frame(80, b"z"))],
        );
        let seeds = [ng, classic];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut f = seeds[(xorshift(&mut rng) % 2) as usize].clone();
            for _ in 0..(xorshift(&mut rng) % 3 + 1) {
                let i = (xorshift(&mut rng) as usize) % f.len();
                f[i] = xorshift(&mut rng) as u8;
            }
            let len = (xorshift(&mut rng) as usize) % (f.len() + 1);
            for (link, ts, frame) in frames(&f[..len]).0 {
                let _ = parse(link, &frame, ts, &[80]);
            }
        }
    }
}
