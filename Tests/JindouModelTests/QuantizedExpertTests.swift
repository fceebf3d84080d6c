import Foundation
import JindouModel
import JindouNumerics
import JindouTestSupport
import Testing

/// Experts re-encoded as Q8_0 (`--expert-format q8_0`): deterministic, and close to the
/// fp32 model on the fixture prompts, measured as KL and top-1 agreement.
@Suite("Quantised experts")
struct QuantizedExpertTests {
    @Test(arguments: ["qwen3-moe-tiny", "glm4-moe-tiny", "deepseek-v3-tiny"])
    func q8_0ExpertsStayCloseAndDeterministic(fixture: String) async throws {
        let reference = try InferenceEngine.load(directory: Fixtures.path(fixture))
        let candidate = try InferenceEngine.load(directory: Fixtures.path(fixture), expertFormat: .q8_0)
        let again = try InferenceEngine.load(directory: Fixtures.path(fixture), expertFormat: .q8_0)
        let (golden, _) = try GoldenSet(fixture: fixture, stem: "golden").load()
        let prompts = golden.cases.map(\.promptIDs)
        // Deterministic: a second load computes the same logits bit for bit.
        let first = try await candidate.promptLogits(prompts[0]), second = try await again.promptLogits(prompts[0])
        #expect(first == second)
        let accuracy = try await QuantizationAccuracy.measure(reference: reference, candidate: candidate, prompts: prompts)
        print("q8_0 experts, \(fixture): \(accuracy.positions) positions, mean KL \(accuracy.meanKL), max KL \(accuracy.maxKL), top-1 agreement \(accuracy.top1Agreement)")
        #expect(accuracy.meanKL > 0, "quantisation changed nothing: the experts were not re-encoded")
        #expect(accuracy.meanKL < 1e-3 && accuracy.top1Agreement >= 0.95, "\(accuracy)")
    }

    /// `--dense-format q8_0` on top: the attention and LM head are re-encoded too, and the
    /// model stays close to fp32.
    @Test func q8_0DenseMatricesToo() async throws {
        let fixture = "qwen3-moe-tiny"
        let reference = try await EngineCache.shared.engine(fixture)
        let experts = try InferenceEngine.load(directory: Fixtures.path(fixture), expertFormat: .q8_0)
        let all = try InferenceEngine.load(directory: Fixtures.path(fixture), expertFormat: .q8_0, denseFormat: .q8_0)
        #expect(all.model.lmHead.blockFormat == .q8_0 && all.model.embedding.blockFormat == nil)
        let prompts = try GoldenSet(fixture: fixture, stem: "golden").load().0.cases.map(\.promptIDs)
        let expertOnly = try await QuantizationAccuracy.measure(reference: reference, candidate: experts, prompts: prompts)
        let everything = try await QuantizationAccuracy.measure(reference: reference, candidate: all, prompts: prompts)
        print("q8_0 experts and dense matrices, \(fixture): mean KL \(everything.meanKL), top-1 agreement \(everything.top1Agreement)")
        #expect(everything.meanKL != expertOnly.meanKL)
        // Top-1 flips only where the fixture's two best logits are nearly tied (measured 0.92).
        #expect(everything.meanKL < 1e-3 && everything.top1Agreement >= 0.9, "\(everything)")
    }

    @Test func unsupportedWidthsAreRefusedWithTheReason() throws {
        // The fixtures' 64-wide hidden size is not a whole Q4_K block (256).
        #expect {
            _ = try InferenceEngine.load(directory: Fixtures.path("qwen3-moe-tiny"), expertFormat: .q4_K)
        } throws: { error in
            "\(error)".contains("multiples of 256")
        }
    }
}
