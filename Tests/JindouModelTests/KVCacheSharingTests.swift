import Foundation
import Testing
@testable import JindouModel

/// Mapped caches share kept prefixes copy-on-write: the sharer reads the source's rows,
/// holds only its own, never changes the source, and keeps reading after the source is gone.
@Suite("KV caches share prefixes copy-on-write")
struct KVCacheSharingTests {
    // Odd widths so rows straddle pages; a sliding layer between two full ones.
    static let keyWidth = 37, valueWidth = 19, windows: [Int?] = [nil, 4, nil]

    func makeCache(_ maxPositions: Int? = 512, windows: [Int?] = windows) -> KVCache {
        KVCache(layerCount: 3, keyWidth: Self.keyWidth, valueWidth: Self.valueWidth, windows: windows, maxPositions: maxPositions)
    }

    func value(_ seed: Int, layer: Int, position: Int, index: Int, values: Bool) -> Float {
        Float((seed &* 7919 &+ layer &* 104_729 &+ position &* 131 &+ index &* 17 &+ (values ? 3 : 0)) % 10_007) / 10_007
    }

    /// Appends positions `length ..< length + count` written from `seed`.
    func append(_ cache: KVCache, _ count: Int, seed: Int) {
        cache.reserve(count)
        for l in 0..<cache.layerCount {
            for p in cache.length..<(cache.length + count) {
                for i in 0..<Self.keyWidth { cache.keys(layer: l)[p * Self.keyWidth + i] = value(seed, layer: l, position: p, index: i, values: false) }
                for i in 0..<Self.valueWidth { cache.values(layer: l)[p * Self.valueWidth + i] = value(seed, layer: l, position: p, index: i, values: true) }
            }
        }
        cache.commit(count)
    }

    /// Whether `cache` holds `seed`'s rows at `positions` (sliding layers: only those the
    /// next position can read).
    func holds(_ cache: KVCache, _ positions: Range<Int>, seed: Int) -> Bool {
        for l in 0..<cache.layerCount {
            let readable = cache.windows[l].map { max(cache.firstKeptPosition(layer: l), cache.length - ($0 - 1)) } ?? 0
            for p in positions where p >= readable {
                for i in 0..<Self.keyWidth where cache.keys(layer: l)[p * Self.keyWidth + i] != value(seed, layer: l, position: p, index: i, values: false) { return false }
                for i in 0..<Self.valueWidth where cache.values(layer: l)[p * Self.valueWidth + i] != value(seed, layer: l, position: p, index: i, values: true) { return false }
            }
        }
        return true
    }

    @Test("A shared prefix reads the source's rows, holds only the rest, and never writes the source")
    func sharedPrefix() {
        let a = makeCache()
        append(a, 300, seed: 1)
        let b = makeCache()
        let shared = b.sharePrefix(of: a, length: 250)
        #expect(b.length == 250)
        #expect(shared > 0 && shared == b.sharedBytes)
        #expect(holds(b, 0..<250, seed: 1))
        #expect(b.allocatedBytes + shared >= 250 * (Self.keyWidth + Self.valueWidth) * 2 * 4, "full layers' rows are held or shared")
        // Two full layers, each sharing the whole pages of its key and value rows.
        let page = KVMapping.pageSize
        #expect(shared == 2 * (250 * Self.keyWidth * 4 / page + 250 * Self.valueWidth * 4 / page) * page)
        #expect(b.borrowedRowStores.count == 1 && b.borrowedRowStores[0] === a.ownRowStore)
        append(b, 50, seed: 2)
        #expect(holds(b, 250..<300, seed: 2))
        #expect(holds(a, 0..<300, seed: 1), "the source is unchanged")
    }

    @Test("Chains of shares read through every store, also after the sources are gone")
    func chainedShares() {
        var a: KVCache? = makeCache()
        append(a!, 300, seed: 1)
        var b: KVCache? = makeCache()
        b!.sharePrefix(of: a!, length: 250)
        append(b!, 60, seed: 2)
        let c = makeCache()
        c.sharePrefix(of: b!, length: 290)
        #expect(c.borrowedRowStores.count == 2)
        #expect(holds(c, 0..<250, seed: 1) && holds(c, 250..<290, seed: 2))
        a = nil
        b = nil
        #expect(holds(c, 0..<250, seed: 1) && holds(c, 250..<290, seed: 2), "stores live while mapped")
        append(c, 30, seed: 3)
        #expect(holds(c, 290..<320, seed: 3))
    }

    @Test("Truncating below the shared prefix makes those pages the cache's own first; reset lets every share go")
    func truncateAndReset() {
        // Full layers only: a sliding layer cannot go back behind the window it copied.
        let full: [Int?] = [nil, nil, nil]
        let a = makeCache(windows: full)
        append(a, 300, seed: 1)
        let b = makeCache(windows: full)
        let shared = b.sharePrefix(of: a, length: 250)
        b.truncate(to: 100)
        #expect(b.sharedBytes < shared)
        #expect(holds(b, 0..<100, seed: 1))
        append(b, 100, seed: 4)
        #expect(holds(b, 100..<200, seed: 4))
        #expect(holds(a, 0..<300, seed: 1), "the source is unchanged")
        // A cache that shares from the truncated one reads what it reads.
        let c = makeCache(windows: full)
        c.sharePrefix(of: b, length: 200)
        #expect(holds(c, 0..<100, seed: 1) && holds(c, 100..<200, seed: 4))
        b.reset()
        #expect(b.sharedBytes == 0 && b.borrowedRowStores.isEmpty)
        append(b, 20, seed: 5)
        #expect(holds(b, 0..<20, seed: 5))
        #expect(holds(a, 0..<300, seed: 1) && holds(c, 0..<100, seed: 1))
    }

    @Test("Heap caches copy instead; a mapped layer past maxPositions moves to the heap with its rows")
    func fallbacks() {
        let a = makeCache()
        append(a, 120, seed: 1)
        let heap = makeCache(nil)
        #expect(heap.sharePrefix(of: a, length: 100) == 0)
        #expect(holds(heap, 0..<100, seed: 1))
        let small = makeCache(64)
        append(small, 60, seed: 6)
        append(small, 40, seed: 6)
        #expect(holds(small, 0..<100, seed: 6))
        let fromHeap = makeCache()
        #expect(fromHeap.sharePrefix(of: heap, length: 100) == 0)
        #expect(holds(fromHeap, 0..<100, seed: 1))
        // A copied sliding layer holds only its window: a shorter prefix of it is not there.
        #expect(heap.firstKeptPosition(layer: 1) == 100 - (Self.windows[1]! - 1))
    }
}
