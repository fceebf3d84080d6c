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

    /// Touches every page so later reads do not fault, calling `progress(bytes)` as it goes.
    public func prefault(progress: (Int) -> Void) {
        madvise(UnsafeMutableRawPointer(mutating: base), length, MADV_WILLNEED)
        let page = 4096
        let step = 8 << 20
        var offset = 0
        var sink: UInt8 = 0
        while offset < length {
            let end = min(length, offset + step)
            var p = offset
            while p < end {
                sink &+= base.load(fromByteOffset: p, as: UInt8.self)
                p += page
            }
            progress(end - offset)
            offset = end
        }
        withExtendedLifetime(sink) {}
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), length)
    }
}
