import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory mapping of a byte range of a file, unmapped when released.
///
/// `@unchecked Sendable`: the mapping is PROT_READ and never changes after creation.
public final class MappedRegion: @unchecked Sendable {
    /// Start of the mapping (page-aligned).
    public let base: UnsafeRawPointer
    /// Length of the mapping in bytes.
    public let length: Int
    /// File offset the mapping starts at.
    public let fileOffset: Int
    public let path: String

    /// Maps `[offset, offset + length)` of `path`, widened to page boundaries.
    public init(path: String, offset: Int, length: Int) throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let alignedOffset = offset / page * page
        let alignedLength = length + (offset - alignedOffset)
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw CheckpointError.unreadableFile(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        let pointer = mmap(nil, max(alignedLength, 1), PROT_READ, MAP_PRIVATE, fd, off_t(alignedOffset))
        guard let pointer, pointer != MAP_FAILED else {
            throw CheckpointError.unreadableFile(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        self.base = UnsafeRawPointer(pointer)
        self.length = max(alignedLength, 1)
        self.fileOffset = alignedOffset
        self.path = path
    }

    /// Pointer to file offset `offset` (must lie inside the mapping).
    public func pointer(atFileOffset offset: Int) -> UnsafeRawPointer {
        precondition(offset >= fileOffset && offset <= fileOffset + length)
        return base + (offset - fileOffset)
    }

    /// Reads every page in and maps it, so later reads do not fault, calling
    /// `progress(bytes)` as it goes. Uses MADV_POPULATE_READ (Linux 5.14+), else touches
    /// one byte per page.
    public func prefault(progress: (Int) -> Void) {
        let start = UnsafeMutableRawPointer(mutating: base)
        madvise(start, length, MADV_WILLNEED)
        let step = 64 << 20
        var offset = 0
        var populate = true
        while offset < length {
            let size = min(length - offset, step)
            if populate && madvise(start + offset, size, Self.populateRead) != 0 { populate = false }
            if !populate { Self.touchPages(base + offset, count: size) }
            progress(size)
            offset += size
        }
    }

    /// MADV_POPULATE_READ from <linux/mman.h> (not exported by Glibc's module).
    private static let populateRead: Int32 = 22

    /// Reads one byte per page; not optimised, so the reads cannot be elided.
    @_optimize(none)
    private static func touchPages(_ base: UnsafeRawPointer, count: Int) {
        var sink: UInt8 = 0
        var p = 0
        while p < count {
            sink &+= base.load(fromByteOffset: p, as: UInt8.self)
            p += 4096
        }
        _ = sink
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), length)
    }
}
