import Foundation
import JindouAdmin
import JindouModel
import JindouTestSupport
import Testing

/// `--wire-dtype bf16|fp8` on a real cluster: the next-token distributions stay within the
/// bounds docs/performance.md documents against the single-process engine (which equals
/// the f32 wire): bf16 keeps greedy output, fp8 keeps the last prompt position's
/// distribution within 0.05 nats (measured worst on these fixtures: 3e-4 on Qwen3-MoE,
/// 0.023 on DeepSeek-V3, whose tiny random weights leave near-ties that fp8 flips).
@Suite("Compact dispatch through a cluster", .serialized)
struct WireDTypeServingTests {
    static let prompts = [[5, 6, 7, 8, 9, 5, 6, 7], [11, 12, 11, 12, 11, 12], [40, 41, 42, 43], [3, 90, 17], [17, 18, 19, 20, 21], [30, 31]]

    @Test(arguments: [("qwen3-moe-tiny", 1, "fp8"), ("qwen3-moe-tiny", 3, "fp8"), ("qwen3-moe-tiny", 3, "bf16"), ("deepseek-v3-tiny", 3, "fp8")])
    func distributionsStayClose(fixture: String, workers: Int, wire: String) async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let cluster = try LocalCluster(fixture: fixture, workers: workers, extraArguments: ["--wire-dtype", wire])
        defer { cluster.stop() }
        let client = try cluster.client
        var worstKL = 0.0
        var agreeing = 0, total = 0
        for prompt in Self.prompts {
            let report = try await client.post("v1/jindou/generate",
                                               GenerationRequestBody(promptIDs: prompt, maxNewTokens: 16, ignoreEOS: true, emitLogits: true),
                                               as: GenerationReport.self)
            let expected = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 16, stopTokenIDs: [],
                                                                       returnLastPromptLogits: true))
            worstKL = max(worstKL, klDivergence(expected.lastPromptLogits!, try #require(report.lastLogits)))
            // Greedy tokens agree up to the first divergence (after it, the contexts differ).
            let same = zip(report.tokenIDs, expected.tokenIDs).prefix { $0 == $1 }.count
            agreeing += same
            total += expected.tokenIDs.count
        }
        if wire == "bf16" {
            #expect(worstKL < 1e-4)
            #expect(agreeing == total)
        } else {
            #expect(worstKL < 0.05, "worst KL \(worstKL)")
            #expect(agreeing > 0)
        }
    }
}

/// KL(p‖q) of the softmax distributions of two logit rows, in nats.
func klDivergence(_ p: [Float], _ q: [Float]) -> Double {
    func logSoftmax(_ x: [Float]) -> [Double] {
        let m = Double(x.max()!)
        let s = x.reduce(0.0) { $0 + exp(Double($1) - m) }
        return x.map { Double($0) - m - log(s) }
    }
    let lp = logSoftmax(p), lq = logSoftmax(q)
    return zip(lp, lq).reduce(0.0) { $0 + exp($1.0) * ($1.0 - $1.1) }
}
