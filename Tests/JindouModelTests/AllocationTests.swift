import CAllocationCounter
import CJindouSupport
import Foundation
import JindouModel
import JindouNumerics
import JindouRouting
import JindouTestSupport
import Testing

/// The per-token hot path allocates nothing once its scratch has grown: linear layers (dense,
/// Q8_0, Q4_K; serial and spread over threads), gate+up pairs, attention, the router's
/// selection, the grouped expert SwiGLU and the linear-attention state update. Counted with
/// the test executable's own allocation functions, on the calling thread (which also runs its
/// share of every parallel loop), after one warm-up pass.
@Suite("No allocation per token")
struct AllocationTests {
    /// Heap allocations `body` makes on this thread, less the thread scratch growing (once
    /// per thread and size: this thread may first run some kind of chunk of a parallel loop
    /// only in the measured pass).
    static func allocations(_ body: () throws -> Void) rethrows -> Int {
        let before = jindou_test_allocations_on_this_thread(), scratchBefore = jindou_thread_scratch_allocations()
        try body()
        let scratch = jindou_thread_scratch_allocations() - scratchBefore
        return jindou_test_allocations_on_this_thread() - before - scratch
    }

    @Test func theCounterSeesAllocations() {
        let counted = Self.allocations {
            let array = [Float](repeating: 1, count: 1000 + Int.random(in: 0..<10))
            #expect(array.count >= 1000)
        }
        #expect(counted >= 1)
    }

    /// A linear-attention decode token's state update (Qwen3-Next-80B's head: 128 × 128), through
    /// the kernels directly and through the recurrent form's loop (which exponentiates the
    /// decays on the stack), decay per head and per key channel.
    @Test(arguments: [false, true])
    func deltaRuleStepAllocatesNothing(perChannel: Bool) {
        let d = 128
        var state = [Float](repeating: 0.01, count: d * d), output = [Float](repeating: 0, count: d)
        let row = (0..<(3 * d)).map { Float(sin(Double($0) * 0.37)) * 0.1 }
        let decay = [Float](repeating: -0.1, count: d), beta: [Float] = [0.5]
        func pass() -> Int {
            row.withUnsafeBufferPointer { r in
                decay.withUnsafeBufferPointer { g in
                    beta.withUnsafeBufferPointer { b in
                        state.withUnsafeMutableBufferPointer { s in
                            output.withUnsafeMutableBufferPointer { o in
                                let x = r.baseAddress!
                                let run = DeltaRuleRun(query: x, key: x + d, value: x + 2 * d, rowStride: 3 * d, beta: b.baseAddress!, betaStride: 1,
                                                       decay: g.baseAddress!, decayStride: perChannel ? d : 1, perChannel: perChannel,
                                                       output: o.baseAddress!, outputStride: d)
                                return Self.allocations {
                                    deltaRuleStep(state: s.baseAddress!, keyDimension: d, valueDimension: d, query: x, key: x + d, value: x + 2 * d,
                                                  beta: 0.5, decay: g.baseAddress!, decayStride: perChannel ? 1 : 0, into: o.baseAddress!)
                                    recurrentDeltaRule(run, tokens: 0..<1, state: s.baseAddress!, keyDimension: d, valueDimension: d)
                                }
                            }
                        }
                    }
                }
            }
        }
        _ = pass()
        #expect(pass() == 0, "\(perChannel ? "per channel" : "per head")")
    }

    /// `qwen3-moe-tiny-wide` (bf16, widths of whole Q4_K super-blocks), as stored and with
    /// every matrix re-encoded as Q8_0 and Q4_K.
    @Test(arguments: [nil, BlockFormat.q8_0, .q4_K])
    func decodePathAllocatesNothing(format: BlockFormat?) throws {
        let fixture = "qwen3-moe-tiny-wide"
        let engine = try InferenceEngine.load(directory: Fixtures.path(fixture), expertFormat: format, denseFormat: format)
        let shard = try #require(engine.experts as? ExpertShard)
        let model = engine.model
        let h = model.description.hiddenSize
        for tokens in [1, 3] {
            let x = (0..<(tokens * h)).map { Float(sin(Double($0) * 0.37)) }
            var y = [Float](repeating: 0, count: tokens * 4 * h * 8), y2 = y
            var scores = [Float](repeating: 0, count: 64), out = [Float](repeating: 0, count: 8 * h)
            var combined = [Float](repeating: 0, count: tokens * h)
            var routingAllocations: [Int] = []
            func pass(count: Bool) throws {
                try x.withUnsafeBufferPointer { xb in
                    try y.withUnsafeMutableBufferPointer { yb in
                        try y2.withUnsafeMutableBufferPointer { y2b in
                            let x = xb.baseAddress!, y = yb.baseAddress!, y2 = y2b.baseAddress!
                            for (l, layer) in model.layers.enumerated() {
                                guard case .grouped(let attention) = layer.attention, case .sparse(let router, _) = layer.feedForward else {
                                    Issue.record("layer \(l) is not attention + MoE")
                                    return
                                }
                                let kernels = Self.allocations {
                                    linear(x, tokens: tokens, weight: attention.query, into: y)
                                    linear(x, tokens: tokens, weight: attention.key, into: y)
                                    linear(x, tokens: tokens, weight: attention.value, into: y)
                                    linearPair(x, tokens: tokens, attention.query, into: y, attention.query, into: y2, parallel: true)
                                    linearPair(x, tokens: tokens, attention.query, into: y, attention.query, into: y2, parallel: false)
                                    linearSerial(x, tokens: tokens, weight: attention.key, into: y)
                                    linear(y, tokens: tokens, weight: attention.output, into: y2)
                                    linear(x, tokens: tokens, weight: model.lmHead, into: y)
                                }
                                let attended = Self.allocations {
                                    scores.withUnsafeMutableBufferPointer { s in
                                        out.withUnsafeMutableBufferPointer { o in
                                            let a = model.description.attention
                                            attendOneToken(query: y2, heads: a.heads, kvHeads: a.keyValueHeads, headDimension: a.headDimension,
                                                           keys: y, values: y, rowStride: a.keyValueHeads * a.headDimension, length: 16,
                                                           scale: a.scale, scores: s.baseAddress!, into: o.baseAddress!)
                                        }
                                    }
                                }
                                var routing = RoutingDecision()
                                let routed = Self.allocations {
                                    routing = router.route(hidden: x, tokens: tokens) { _ in .configured }
                                }
                                let experts = try Self.allocations {
                                    try combined.withUnsafeMutableBufferPointer {
                                        try shard.compute(layer: l, hidden: x, tokenCount: tokens, routing: routing, into: $0.baseAddress!)
                                    }
                                }
                                if count {
                                    let label = "\(format?.rawValue ?? "bf16"), \(tokens) token(s), layer \(l)"
                                    #expect(kernels == 0, "linear layers: \(label)")
                                    #expect(attended == 0, "attention: \(label)")
                                    #expect(experts == 0, "grouped experts: \(label)")
                                    routingAllocations.append(routed)
                                }
                            }
                        }
                    }
                }
            }
            try pass(count: false)  // grows this thread's scratch to the model's sizes
            try pass(count: true)
            // The decision's three arrays, whatever the token count; nothing per token.
            #expect(routingAllocations.allSatisfy { $0 <= 3 }, "router: \(routingAllocations)")
        }
    }
}
