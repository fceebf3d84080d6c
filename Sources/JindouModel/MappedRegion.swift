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

    /// Maps byte ranges of `path`, one mapping per run of ranges whose pages touch (so a
    /// worker maps its experts' bytes and little else). Returns the mappings and, for each
    /// range in input order, the mapping that holds it.
    public static func mapCoalesced(path: String, ranges: [Range<Int>]) throws -> (regions: [MappedRegion], regionOfRange: [MappedRegion]) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let order = ranges.indices.sorted { ranges[$0].lowerBound < ranges[$1].lowerBound }
        var groups: [[Int]] = []
        var groupEnd = -1
        for index in order {
            let range = ranges[index]
            if groups.isEmpty || range.lowerBound / page * page > groupEnd {
                groups.append([index])
            } else {
                groups[groups.count - 1].append(index)
            }
            groupEnd = max(groupEnd, (range.upperBound + page - 1) / page * page)
        }
        var regions: [MappedRegion] = []
        var regionOfRange = [MappedRegion?](repeating: nil, count: ranges.count)
        for group in groups {
            let begin = ranges[group[0]].lowerBound
            let end = group.map { ranges[$0].upperBound }.max()!
            let region = try MappedRegion(path: path, offset: begin, length: end - begin)
            regions.append(region)
            for index in group { regionOfRange[index] = region }
        }
        return (regions, regionOfRange.map { $0! })
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), length)
    }
}
