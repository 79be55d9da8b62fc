//! NumPy `.npz` archives: a zip file holding one `NAME.npy` member per array, either stored
//! (`np.savez`) or deflate-compressed (`np.savez_compressed`).
//!
//! Reading streams each requested member once, straight from the (decompressing) zip reader
//! into its typed vector: a 400 MB float32 member costs 400 MB of memory, with no copy of the
//! file and no conversion to f64. The member's size from the zip directory is checked against
//! the `.npy` header before reading, and the zip CRC-32 is verified at the end of the member.
//! [`NpzReader::map_floats`] instead gives a stored float member in place from the mapped
//! file (after the same CRC-32 check), as the feature loader does for `features`.
//!
//! Writing produces stored (uncompressed) members in a fixed order with a fixed timestamp
//! (1980-01-01), so the same arrays always give the same bytes; the file is written
//! atomically (see [`crate::io::write_atomic`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use zip::result::ZipError;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::array::{shape_string, ArrayView, DType, NpyArray};
use crate::error::{DataError, Result};
use crate::mapped::{crc32, map_file, MappedFloats};
use crate::npy::{self, NpyHeader, NpyProblem};

const FORMAT: &str = ".npz";

/// An open `.npz` archive from which arrays can be read one at a time.
pub struct NpzReader {
    path: PathBuf,
    archive: ZipArchive<BufReader<File>>,
    /// Array names (member names without the `.npy` suffix), in archive order.
    names: Vec<String>,
}

impl std::fmt::Debug for NpzReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpzReader")
            .field("path", &self.path)
            .field("names", &self.names)
            .finish()
    }
}

fn zip_error(path: &Path, context: &str, error: ZipError) -> DataError {
    match error {
        ZipError::Io(e)
            if e.kind() != io::ErrorKind::UnexpectedEof
                && e.kind() != io::ErrorKind::InvalidData =>
        {
            DataError::io(path, "reading", e)
        }
        other => DataError::format(path, FORMAT, format!("{context}: {other}")),
    }
}

impl NpzReader {
    /// Opens the archive and reads its directory (not the data).
    pub fn open(path: &Path) -> Result<Self> {
        let file = crate::io::open_regular(path, "a .npz file")?;
        let archive = ZipArchive::new(BufReader::with_capacity(1 << 16, file)).map_err(|e| {
            zip_error(
                path,
                "cannot read the zip directory (the file is truncated or not a zip archive)",
                e,
            )
        })?;
        // Which of two members of one name a reader gets is undefined: refuse the archive.
        if archive.has_duplicate_names() {
            return Err(DataError::format(
                path,
                ".npz",
                "two members have the same name (which one holds the array is undefined)",
            ));
        }
        let mut names = Vec::with_capacity(archive.len());
        for name in archive.file_names() {
            let name = name.map_err(|e| zip_error(path, "cannot read a member name", e))?;
            if let Some(stem) = name.strip_suffix(".npy") {
                names.push(stem.to_string());
            }
        }
        Ok(NpzReader {
            path: path.to_path_buf(),
            archive,
            names,
        })
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the arrays (member names without `.npy`), in archive order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Reads the array `name` (member `name.npy`). A missing member gives
    /// [`DataError::MissingArray`].
    pub fn read(&mut self, name: &str) -> Result<NpyArray> {
        if !self.contains(name) {
            return Err(DataError::MissingArray {
                path: self.path.clone(),
                key: name.to_string(),
                available: list_or_none(&self.names),
            });
        }
        let member = format!("{name}.npy");
        let path = &self.path;
        let mut file = self
            .archive
            .by_name(&member)
            .map_err(|e| zip_error(path, &format!("member '{member}'"), e))?;
        let size = file.size();
        npy::read_npy_stream(&mut file, Some(size)).map_err(|p| member_error(p, path, &member))
    }

    /// The float array `name` in place when its member is stored uncompressed as a
    /// little-endian float32/float64 array in C order (as `np.savez` writes one), after
    /// checking the member's CRC-32; `Ok(None)` for a missing, compressed or other member,
    /// which [`NpzReader::read`] then reads or reports.
    pub fn map_floats(&mut self, name: &str) -> Result<Option<(Vec<usize>, MappedFloats)>> {
        if !self.contains(name) {
            return Ok(None);
        }
        let member = format!("{name}.npy");
        let path = &self.path;
        let (start, size, crc) = {
            let file = self
                .archive
                .by_name(&member)
                .map_err(|e| zip_error(path, &format!("member '{member}'"), e))?;
            if file.compression() != CompressionMethod::Stored
                || file.encrypted()
                || file.compressed_size() != file.size()
            {
                return Ok(None);
            }
            match file.data_start() {
                Some(start) => (start, file.size(), file.crc32()),
                None => return Ok(None),
            }
        };
        let (Ok(start), Ok(size)) = (usize::try_from(start), usize::try_from(size)) else {
            return Ok(None);
        };
        let Some(map) = crate::io::open_regular(path, "a .npz file")
            .ok()
            .as_ref()
            .and_then(map_file)
        else {
            return Ok(None);
        };
        let Some(mapped) = npy::map_float_array(map.clone(), start, size) else {
            return Ok(None);
        };
        if crc32(&map[start..start + size]) != crc {
            return Err(DataError::format(
                path,
                FORMAT,
                format!(
                    "member '{member}' is corrupt: its data fail the archive's CRC-32 checksum"
                ),
            ));
        }
        Ok(Some(mapped))
    }

    /// The float array `name` as a [`DeflatedFloats`], to be read in row batches, when its
    /// member is compressed and its header declares a 2-D little-endian float32/float64 array
    /// in C order whose size matches the zip directory; `Ok(None)` for anything else (a
    /// missing, stored or other member), which [`NpzReader::read`] then reads or reports.
    pub fn deflated_floats(&mut self, name: &str) -> Result<Option<(Vec<usize>, DeflatedFloats)>> {
        if !self.contains(name) {
            return Ok(None);
        }
        let member = format!("{name}.npy");
        let path = &self.path;
        let mut file = self
            .archive
            .by_name(&member)
            .map_err(|e| zip_error(path, &format!("member '{member}'"), e))?;
        if file.compression() == CompressionMethod::Stored || file.encrypted() {
            return Ok(None);
        }
        let size = file.size();
        let Ok(header) = npy::read_header(&mut file) else {
            return Ok(None);
        };
        let (&[rows, cols], Some(data_bytes)) = (&header.shape[..], header.data_bytes()) else {
            return Ok(None);
        };
        if header.fortran_order
            || !matches!(header.dtype, DType::F32 | DType::F64)
            || (header.data_offset as u64).checked_add(data_bytes as u64) != Some(size)
        {
            return Ok(None);
        }
        let deflated = DeflatedFloats {
            path: path.clone(),
            member,
            header: header.clone(),
            rows,
            cols,
        };
        Ok(Some((header.shape, deflated)))
    }

    /// Reads every array of the archive.
    pub fn read_all(&mut self) -> Result<BTreeMap<String, NpyArray>> {
        let names = self.names.clone();
        names
            .into_iter()
            .map(|name| self.read(&name).map(|a| (name, a)))
            .collect()
    }
}

/// A compressed float member of an `.npz` archive (as `np.savez_compressed` writes one),
/// read on demand in row batches ([`DeflatedFloats::for_each_batch`]) so that a large member
/// never has to be inflated whole: memory is one batch, however many rows the member holds.
#[derive(Clone, Debug, PartialEq)]
pub struct DeflatedFloats {
    path: PathBuf,
    member: String,
    /// The member's header as first read; a reread must find the same one.
    header: NpyHeader,
    rows: usize,
    cols: usize,
}

impl DeflatedFloats {
    /// float32 or float64.
    pub fn dtype(&self) -> DType {
        self.header.dtype
    }

    /// The number of elements (rows x columns).
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inflates the member from its start and calls `visit(bytes, rows)` with consecutive
    /// batches of at most `batch_rows` rows (at least one), each as the little-endian bytes of
    /// `rows` x columns elements, in order. The member's CRC-32 is checked at its end (by the
    /// zip reader): a corrupt member is reported after the batches before the damage were
    /// visited, so a caller must discard what it accumulated when this returns an error.
    pub fn for_each_batch(
        &self,
        batch_rows: usize,
        mut visit: impl FnMut(&[u8], usize) -> Result<()>,
    ) -> Result<()> {
        let path = &self.path;
        let member = &self.member;
        let mut reader = NpzReader::open(path)?;
        let mut file = reader
            .archive
            .by_name(member)
            .map_err(|e| zip_error(path, &format!("member '{member}'"), e))?;
        let header = npy::read_header(&mut file).map_err(|p| member_error(p, path, member))?;
        if header != self.header {
            return Err(DataError::format(
                path,
                FORMAT,
                format!(
                    "member '{member}' changed while it was read (its header now declares shape {})",
                    shape_string(&header.shape)
                ),
            ));
        }
        let row_bytes = self.cols * self.header.dtype.size();
        let batch_rows = batch_rows.clamp(1, self.rows.max(1));
        let mut buffer = vec![0u8; batch_rows * row_bytes];
        let mut done = 0;
        while done < self.rows {
            let rows = batch_rows.min(self.rows - done);
            let bytes = &mut buffer[..rows * row_bytes];
            file.read_exact(bytes).map_err(|e| {
                let problem = if e.kind() == io::ErrorKind::UnexpectedEof {
                    NpyProblem::Invalid(format!(
                        "truncated: the header promises {} rows, but the data end after {done} to {} rows",
                        self.rows,
                        done + rows
                    ))
                } else {
                    NpyProblem::Io(e)
                };
                member_error(problem, path, member)
            })?;
            visit(bytes, rows)?;
            done += rows;
        }
        // Reading past the end makes the zip reader check the member's CRC-32.
        let mut probe = [0u8; 1];
        match file.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(DataError::format(
                path,
                FORMAT,
                format!("member '{member}': unexpected bytes after its data"),
            )),
            Err(e) => Err(member_error(NpyProblem::Io(e), path, member)),
        }
    }
}

/// Decompression and CRC failures surface as io errors from inside the member reader; they
/// mean a corrupt archive rather than an operating-system problem.
fn member_error(problem: NpyProblem, path: &Path, member: &str) -> DataError {
    match problem {
        NpyProblem::Io(e) => {
            DataError::format(path, FORMAT, format!("member '{member}' is corrupt: {e}"))
        }
        other => other.into_error(path, FORMAT, Some(member)),
    }
}

pub(crate) fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no arrays".to_string()
    } else {
        names.join(", ")
    }
}

/// Reads every array of the `.npz` file `path`, keyed by name.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, NpyArray>> {
    NpzReader::open(path)?.read_all()
}

/// Writes `arrays` (name, array) as stored members `name.npy` of the `.npz` file `path`,
/// atomically. Names must be unique and non-empty.
pub fn write_npz(path: &Path, arrays: &[(&str, ArrayView<'_>)]) -> Result<()> {
    for (i, (name, array)) in arrays.iter().enumerate() {
        if name.is_empty() || arrays[..i].iter().any(|(other, _)| other == name) {
            return Err(DataError::array(path, name, "name is empty or given twice"));
        }
        npy::check_view(array).map_err(|problem| DataError::array(path, name, problem))?;
    }
    crate::io::write_atomic(path, |file| write_npz_to(file, arrays))
}

/// Writes an `.npz` archive to any seekable writer.
pub fn write_npz_to<W: Write + io::Seek>(
    writer: W,
    arrays: &[(&str, ArrayView<'_>)],
) -> io::Result<()> {
    let mut zip = ZipWriter::new(writer);
    for (name, array) in arrays {
        let size = npy::encoded_len(array) as u64;
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(DateTime::default())
            .unix_permissions(0o644)
            .large_file(size >= u64::from(u32::MAX));
        zip.start_file(format!("{name}.npy"), options)
            .map_err(io::Error::other)?;
        npy::write_npy_to(&mut zip, array)?;
    }
    zip.finish().map_err(io::Error::other)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::ArraySlice;

    #[test]
    fn in_memory_round_trip() {
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [7u8, 8];
        let arrays = [
            (
                "a",
                ArrayView {
                    shape: &[2, 2],
                    data: ArraySlice::F32(&a),
                },
            ),
            (
                "b",
                ArrayView {
                    shape: &[2],
                    data: ArraySlice::U8(&b),
                },
            ),
        ];
        let mut buffer = io::Cursor::new(Vec::new());
        write_npz_to(&mut buffer, &arrays).unwrap();
        let mut archive = ZipArchive::new(io::Cursor::new(buffer.into_inner())).unwrap();
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().to_string())
            .collect();
        assert_eq!(names, ["a.npy", "b.npy"]);
        let mut member = archive.by_name("a.npy").unwrap();
        assert_eq!(member.compression(), CompressionMethod::Stored);
        let size = member.size();
        let back = npy::read_npy_stream(&mut member, Some(size)).unwrap();
        assert_eq!(back.shape, [2, 2]);
        assert_eq!(back.data, crate::array::ArrayData::F32(a.to_vec()));
    }

    /// Io errors from the zip reader: a short read or bad bytes mean a corrupt archive ("not a
    /// valid .npz file"); any other kind is a system error while reading it. (Real read errors
    /// such as EIO cannot be produced from a test file.)
    #[test]
    fn zip_reader_io_errors_are_corrupt_files_or_read_failures_by_kind() {
        let path = Path::new("run/features.npz");
        let io = |kind| ZipError::Io(io::Error::new(kind, "boom"));
        for kind in [io::ErrorKind::UnexpectedEof, io::ErrorKind::InvalidData] {
            let err = zip_error(path, "member 'labels.npy'", io(kind));
            assert!(
                matches!(err, DataError::InvalidFormat { .. }),
                "{kind:?}: {err:?}"
            );
            assert_eq!(
                err.to_string(),
                "run/features.npz: not a valid .npz file: member 'labels.npy': i/o error: boom"
            );
        }
        for kind in [io::ErrorKind::PermissionDenied, io::ErrorKind::Other] {
            let err = zip_error(path, "member 'labels.npy'", io(kind));
            assert!(matches!(err, DataError::Io { .. }), "{kind:?}: {err:?}");
            assert_eq!(err.to_string(), "run/features.npz: reading failed: boom");
        }
    }
}
