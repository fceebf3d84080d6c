import Foundation
import Testing
import JindouModel
import JindouTestSupport

/// Sliding-window layers keep a bounded cache (issue 19 item 3): what attention can still
/// read stays readable and exact through decode steps, chunked prefill, compaction and
/// speculative rollback; memory stops growing with the context; and a sliding model's
/// logits are unchanged (its goldens run prompts 8× the window: TransformersGoldenTests).
@Suite("Sliding-window layers keep a bounded cache")
struct SlidingWindowCacheTests {
    /// The value written for (layer, position, feature).
    static func value(_ l: Int, _ p: Int, _ i: Int) -> Float { Float(l * 1_000_000 + p * 10 + i) }

    func write(_ cache: KVCache, positions: Range<Int>) {
        cache.reserve(positions.count)
        for l in 0..<cache.layerCount {
            for p in positions {
                for i in 0..<cache.rowWidth {
                    cache.keys(layer: l)[p * cache.rowWidth + i] = Self.value(l, p, i)
                    cache.values(layer: l)[p * cache.valueWidth + i] = -Self.value(l, p, i)
                }
            }
        }
        cache.commit(positions.count)
    }

    /// Every position each layer must still hold reads back what was written.
    func expectReadable(_ cache: KVCache, _ label: String) {
        for l in 0..<cache.layerCount {
            let from = cache.windows[l].map { max(0, cache.length - ($0 - 1)) } ?? 0
            #expect(cache.firstKeptPosition(layer: l) <= from, "\(label) layer \(l)")
            for p in from..<cache.length {
                for i in 0..<cache.rowWidth where cache.keys(layer: l)[p * cache.rowWidth + i] != Self.value(l, p, i)
                    || cache.values(layer: l)[p * cache.valueWidth + i] != -Self.value(l, p, i) {
                    Issue.record("\(label): layer \(l) position \(p) feature \(i) was lost")
                    return
                }
            }
        }
    }

    @Test func windowsStayReadableAndMemoryStaysBounded() {
        let (window, width) = (5, 3)
        let cache = KVCache(layerCount: 2, keyWidth: width, valueWidth: width, windows: [window, nil])
        var position = 0
        // A 13-token prefill chunk, then 300 single-token decode steps with a 4-token step now and then.
        for step in [13] + Array(repeating: 1, count: 300) + [4, 4, 1, 4] {
            write(cache, positions: position..<(position + step))
            position += step
            expectReadable(cache, "after position \(position)")
        }
        let rowBytes = 2 * width * MemoryLayout<Float>.size
        let full = position * rowBytes
        // Full layer: every position (geometric growth); sliding layer: at most 2 × (W − 1 + the largest step) rows.
        #expect(cache.allocatedBytes <= 2 * full + 2 * (window - 1 + 13) * rowBytes)
        #expect(cache.allocatedBytes - full < full, "the sliding layer must not hold the whole context")
        #expect(cache.firstKeptPosition(layer: 0) > 0 && cache.firstKeptPosition(layer: 1) == 0)
    }

    @Test func speculativeRollbackKeepsTheWindow() {
        let cache = KVCache(layerCount: 1, keyWidth: 2, valueWidth: 2, windows: [4])
        var position = 0
        for _ in 0..<60 {
            // A verify step of 1 + 3 drafts, of which 0…3 are accepted: positions past them are dropped.
            write(cache, positions: position..<(position + 4))
            let accepted = position % 4
            position += 1 + accepted
            cache.truncate(to: position)
            expectReadable(cache, "after rollback to \(position)")
        }
        cache.reset()
        #expect(cache.length == 0 && cache.firstKeptPosition(layer: 0) == 0)
        write(cache, positions: 0..<3)
        expectReadable(cache, "after reset")
    }

    /// The scheduler's budget counts what a sliding layer keeps, not the whole context.
    @Test func theBudgetCountsBoundedLayers() throws {
        let d = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path("gpt-oss-tiny")))
        #expect(d.cacheWindows == [5, nil, 5, nil])
        let perToken = d.keyValueCacheBytesPerToken / d.layerCount
        #expect(d.keyValueCacheBytes(tokens: 1000, stepTokens: 16) == perToken * (2 * 1000 + 2 * (5 - 1 + 16)))
        #expect(d.keyValueCacheBytes(tokens: 10, stepTokens: 16) == 10 * d.keyValueCacheBytesPerToken)
        let full = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path("qwen3-moe-tiny")))
        #expect(full.keyValueCacheBytes(tokens: 1000, stepTokens: 16) == 1000 * full.keyValueCacheBytesPerToken)
    }

    /// A sliding model decoding far past its window: the cache of its sliding layers stays
    /// bounded while the logits equal a fresh whole-prompt prefill of the same tokens.
    @Test func decodingFarPastTheWindowEqualsPrefill() async throws {
        let engine = try await EngineCache.shared.engine("gpt-oss-tiny")
        let prompt = Array(1...12)
        let result = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 40, stopTokenIDs: []))
        let all = prompt + result.tokenIDs
        // Logits of every position from one prefill (a fresh cache) against step-by-step decoding.
        let prefill = try await engine.promptLogits(all)
        let cache = engine.model.makeCache()
        var stepped: [[Float]] = []
        for token in all {
            let logits = try await engine.model.forward([SequenceStep(cache: cache, tokens: [token])], experts: engine.experts)[0]
            stepped.append(logits)
        }
        for (p, (a, b)) in zip(prefill, stepped).enumerated() {
            #expect(maxAbsDifference(a, b) <= 1e-4, "position \(p)")
        }
        #expect(cache.firstKeptPosition(layer: 0) > 0, "the sliding layer should have dropped old positions")
    }
}
