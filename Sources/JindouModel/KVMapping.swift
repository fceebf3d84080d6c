import CJindouSupport
import Foundation
import Synchronization

/// A memfd holding KV-cache rows at fixed offsets (`KVMapping`). Caches that share a kept
/// prefix map its pages, and hold the store, so it lives while any of them reads it.
public final class KVRowStore: @unchecked Sendable {
    let fd: Int32
    /// Bytes of rows its own cache wrote, set when that cache is kept as a prefix: what the
    /// scheduler's budget counts for this store, once however many caches map it.
    /// Scheduler-confined.
    public var bytes = 0

    init?(capacity: Int) {
        let fd = jindou_kv_memfd(capacity)
        guard fd >= 0 else { return nil }
        self.fd = fd
    }

    deinit { close(fd) }
}

/// The mapped rows of one KVCache's full-attention layers: per layer a key and a value
/// region at page-aligned offsets of its own store, `maxPositions` rows each, in one
/// MAP_SHARED mapping. A region's first pages may instead be mapped from other stores
/// (`share`): the pages of a prefix this cache reads and never writes.
final class KVMapping {
    struct Layout: Equatable {
        let widths: [Int]  // floats per row: keys, values
        let maxPositions: Int
        /// Per layer, the byte offset of its key and value regions; nil for a sliding layer.
        let offsets: [[Int]?]
        let totalBytes: Int
    }

    /// Pages of a region mapped from `store` (the same offsets there).
    struct Segment {
        let store: KVRowStore
        let pages: Range<Int>
    }

    static let pageSize = Int(jindou_page_size())

    /// Every shared piece is a mapping of its own (and splits the one it lands in), counted
    /// against the process's `vm.max_map_count` (65 530 by default), which every other mmap
    /// and thread stack needs too: sharing stops, and copying takes over, while the pieces
    /// would use more than a quarter of it.
    static let mapBudget: Int = {
        let text = (try? String(contentsOfFile: "/proc/sys/vm/max_map_count", encoding: .utf8)) ?? ""
        return max(1024, (Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 65_530) / 4)
    }()
    /// Mappings the pieces of every cache in this process take (two per piece, for the split).
    static let mapsInUse = Atomic<Int>(0)
    static let mapsPerPiece = 2

    let layout: Layout
    let store: KVRowStore
    private let base: UnsafeMutableRawPointer
    /// Per layer and kind (0 keys, 1 values): the borrowed pages, in order from page 0.
    private var borrowed: [[[Segment]]]
    /// Layers that moved to the heap (past maxPositions).
    private var released: [Bool]
    /// False once an unshare could not map our own pages back: nobody may borrow from us then.
    private(set) var shareable = true
    /// Pieces of other stores mapped into ours now (what `mapsInUse` counts for us).
    private var piecesMapped = 0

    init?(windows: [Int?], widths: (keys: Int, values: Int), maxPositions: Int) {
        let page = Self.pageSize
        func regionBytes(_ width: Int) -> Int { (maxPositions * width * MemoryLayout<Float>.size + page - 1) / page * page }
        var offsets: [[Int]?] = [], total = 0
        for window in windows {
            if window != nil {
                offsets.append(nil)
            } else {
                offsets.append([total, total + regionBytes(widths.keys)])
                total += regionBytes(widths.keys) + regionBytes(widths.values)
            }
        }
        guard total > 0, let store = KVRowStore(capacity: total),
              let base = jindou_kv_map(nil, total, store.fd, 0, 0) else { return nil }
        layout = Layout(widths: [widths.keys, widths.values], maxPositions: maxPositions, offsets: offsets, totalBytes: total)
        self.store = store
        self.base = base
        borrowed = Array(repeating: [[], []], count: windows.count)
        released = Array(repeating: false, count: windows.count)
    }

    deinit {
        _ = jindou_kv_unmap(base, layout.totalBytes)
        Self.mapsInUse.subtract(piecesMapped * Self.mapsPerPiece, ordering: .relaxed)
    }

    func holds(layer l: Int) -> Bool { layout.offsets[l] != nil && !released[l] }

    func rows(layer l: Int, values: Bool) -> UnsafeMutablePointer<Float> {
        (base + layout.offsets[l]![values ? 1 : 0]).assumingMemoryBound(to: Float.self)
    }

    func release(layer l: Int) {
        released[l] = true
        borrowed[l] = [[], []]
    }

    private func borrowedPages(_ l: Int, _ kind: Int) -> Int { borrowed[l][kind].last?.pages.upperBound ?? 0 }

    private var regions: [(layer: Int, kind: Int)] {
        (0..<layout.offsets.count).filter(holds).flatMap { l in (0..<2).filter { layout.widths[$0] > 0 }.map { (l, $0) } }
    }

    /// Written pages of our own store for `length` rows.
    func ownBytes(length: Int) -> Int {
        let page = Self.pageSize
        return regions.reduce(0) { sum, r in
            let pages = (length * layout.widths[r.kind] * MemoryLayout<Float>.size + page - 1) / page
            return sum + max(0, pages - borrowedPages(r.layer, r.kind)) * page
        }
    }

    var sharedBytes: Int { regions.reduce(0) { $0 + borrowedPages($1.layer, $1.kind) } * Self.pageSize }

    /// Every store we borrow from, once each.
    var borrowedStores: [KVRowStore] {
        var seen = Set<ObjectIdentifier>(), stores: [KVRowStore] = []
        for r in regions {
            for segment in borrowed[r.layer][r.kind] where seen.insert(ObjectIdentifier(segment.store)).inserted { stores.append(segment.store) }
        }
        return stores
    }

    /// Maps the whole pages of `other`'s region below `bytes` over ours, from whichever
    /// stores hold them; returns how many bytes are now shared (the caller copies the rest).
    func share(layer l: Int, values: Bool, from other: KVMapping, bytes: Int) -> Int {
        let kind = values ? 1 : 0, page = Self.pageSize, pages = bytes / page
        precondition(borrowed[l][kind].isEmpty, "share into a fresh region")
        guard other.shareable, other.layout == layout, pages > 0 else { return 0 }
        var pieces = other.borrowed[l][kind].compactMap { s -> Segment? in
            let end = min(s.pages.upperBound, pages)
            return end > s.pages.lowerBound ? Segment(store: s.store, pages: s.pages.lowerBound..<end) : nil
        }
        let theirs = other.borrowedPages(l, kind)
        if pages > theirs { pieces.append(Segment(store: other.store, pages: theirs..<pages)) }
        let offset = layout.offsets[l]![kind]
        for piece in pieces {
            guard Self.mapsInUse.add(Self.mapsPerPiece, ordering: .relaxed).newValue <= Self.mapBudget else {
                Self.mapsInUse.subtract(Self.mapsPerPiece, ordering: .relaxed)
                break
            }
            let at = offset + piece.pages.lowerBound * page
            guard jindou_kv_map(base + at, piece.pages.count * page, piece.store.fd, at, 1) != nil else {
                Self.mapsInUse.subtract(Self.mapsPerPiece, ordering: .relaxed)
                break
            }
            borrowed[l][kind].append(piece)
            piecesMapped += 1
        }
        return borrowedPages(l, kind) * page
    }

    /// Makes the borrowed pages from `keepingBytes(values)` (rounded down to a page) on our
    /// own again, their contents kept (a truncated cache writes there next); with
    /// `keepingBytes` 0 and `preserve` false, lets every shared page go (a reset).
    func unshare(keepingBytes: (Bool) -> Int, preserve: Bool = true) {
        let page = Self.pageSize
        for r in regions where !borrowed[r.layer][r.kind].isEmpty {
            let keep = keepingBytes(r.kind == 1) / page, end = borrowedPages(r.layer, r.kind)
            guard keep < end else { continue }
            let at = layout.offsets[r.layer]![r.kind] + keep * page, count = (end - keep) * page
            let saved = preserve ? Data(bytes: base + at, count: count) : nil
            if jindou_kv_map(base + at, count, store.fd, at, 0) == nil {
                shareable = false  // the private copy stays mapped: right for us, not for borrowers
                continue
            }
            saved?.withUnsafeBytes { (base + at).copyMemory(from: $0.baseAddress!, byteCount: count) }
            let before = borrowed[r.layer][r.kind].count
            borrowed[r.layer][r.kind] = borrowed[r.layer][r.kind].compactMap { s in
                s.pages.lowerBound >= keep ? nil : Segment(store: s.store, pages: s.pages.lowerBound..<min(s.pages.upperBound, keep))
            }
            // Whole pieces mapped back to our own store; a cut one still counts.
            let gone = before - borrowed[r.layer][r.kind].count
            piecesMapped -= gone
            Self.mapsInUse.subtract(gone * Self.mapsPerPiece, ordering: .relaxed)
        }
    }
}
