import Foundation
import JindouTestSupport
import Testing
@testable import JindouModel

/// `--speculative mtp`: the checkpoint's MTP layer computes what transformers' MtpModel
/// computes (goldens from tools/make_fixtures.py), and drafting with it never changes
/// greedy output. Qwen3-Next's (`mtp.*`, `qwen3-next-tiny-moe`): transformers has no MTP for
/// it; the goldens compose transformers' Qwen3NextDecoderLayer and norms as vLLM's
/// Qwen3NextMultiTokenPredictor does (observed 1.0e-5; DeepSeek-V3's 3.0e-6), and drafting
/// rolls the main model's linear-attention states back on rejection.
@Suite struct MultiTokenPredictionTests {
    static let fixture = "deepseek-v3-tiny-noq"
    /// Checkpoints with an MTP layer; the GGUF file is llama.cpp's conversion of
    /// qwen3-next-tiny-moe, its MTP layer as the nextn block (blk.3), with that fixture's goldens.
    static let fixtures = ["deepseek-v3-tiny-noq", "qwen3-next-tiny-moe", "gguf/qwen3-next-tiny-moe-f32.gguf"]

    /// The fixture whose goldens apply to `model`.
    static func goldenFixture(_ model: String) -> String { model.hasPrefix("gguf/qwen3-next-tiny-moe") ? "qwen3-next-tiny-moe" : model }

    struct Goldens {
        let tokens: [Int]
        let promptLength: Int
        let prefill: [[Float]]
        let step: [Float]
    }

    static func goldens(_ fixture: String = fixture) throws -> Goldens {
        let directory = Fixtures.path(fixture)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/golden.json"))) as! [String: Any]
        let mtp = (json["mtp"] as! [String: Any])["goldens"] as! [String: Any]
        let file = try SafetensorsFile(path: directory + "/golden.safetensors")
        return Goldens(tokens: mtp["tokens"] as! [Int], promptLength: mtp["prompt_length"] as! Int,
                       prefill: try rows(try file.tensor("mtp.prefill_logits")), step: try file.tensor("mtp.step_logits").floats())
    }

    @Test(arguments: fixtures)
    func theLayerEqualsTransformersMtpModel(fixture: String) async throws {
        let engine = try await EngineCache.shared.engine(fixture)
        let source = try openWeightSource(Fixtures.path(fixture))
        let predictor = try MultiTokenPredictor(description: engine.description, checkpoint: source)
        let golden = try Self.goldens(Self.goldenFixture(fixture))
        let bound: Float = 1e-4
        let n = golden.promptLength
        // The main model's normed hidden states of every position.
        var step = SequenceStep(cache: engine.model.makeCache(), tokens: golden.tokens, logits: .none)
        step.hidden = .all
        let hidden = try await engine.model.forwardReturningHidden([step], experts: engine.experts).hidden[0]
        let h = engine.description.hiddenSize
        // Prefill: the pairs (h_t, x_{t+1}) for t < n, then one decode pair through the same cache.
        let cache = predictor.makeCache(for: engine.model)
        let prefill = try await predictor.allLogits(cache: cache, tokens: Array(golden.tokens[1...n]), previous: Array(hidden[0..<(n * h)]),
                                                    model: engine.model)
        #expect(prefill.count == golden.prefill.count && prefill.count == n)
        // Real distributions, not a degenerate match.
        #expect(golden.step.max()! - golden.step.min()! > 0.1)
        for (mine, theirs) in zip(prefill, golden.prefill) { #expect(maxAbsDifference(mine, theirs) < bound, "\(fixture)") }
        let next = try await predictor.forward([.init(cache: cache, tokens: [golden.tokens[n + 1]], previous: Array(hidden[(n * h)..<((n + 1) * h)]))],
                                               model: engine.model)
        #expect(maxAbsDifference(next[0].logits, golden.step) < bound, "\(fixture)")
        #expect(cache.length == n + 1)
    }

    @Test func aCheckpointWithoutMTPLayersIsRefusedByName() async throws {
        let engine = try await EngineCache.shared.engine("deepseek-v3-tiny")
        #expect(throws: EngineError.self) {
            _ = try MultiTokenPredictor(description: engine.description, checkpoint: try openWeightSource(Fixtures.path("deepseek-v3-tiny")))
        }
    }
}

extension MultiTokenPredictionTests {
    @Test(arguments: fixtures, [1, 3])
    func mtpDraftsNeverChangeGreedyOutput(fixture: String, draftTokens: Int) async throws {
        let engine = try InferenceEngine.load(directory: Fixtures.path(fixture), multiTokenPrediction: true)
        #expect(engine.predictor?.layerIndex == engine.description.layerCount)
        let golden = try Self.goldens(Self.goldenFixture(fixture))
        for prompt in [Array(golden.tokens.prefix(golden.promptLength)), [5, 6, 7, 5, 6, 7, 5, 6], [11]] {
            let request = GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 20, stopTokenIDs: [])
            let plain = try await engine.generate(request)
            let speculative = try await engine.generate(request, speculation: SpeculationOptions(mode: .mtp, draftTokens: draftTokens))
            #expect(speculative.tokenIDs == plain.tokenIDs, "prompt \(prompt)")
            let statistics = try #require(speculative.speculation)
            #expect(statistics.tokens == 19 && statistics.drafted > 0 && statistics.accepted <= statistics.drafted)
        }
    }

    @Test func mtpWithoutTheLayerLoadedIsAClearError() async throws {
        let engine = try await EngineCache.shared.engine(Self.fixture)
        await #expect(throws: EngineError.self) {
            try await engine.generate(GenerationRequest(promptTokenIDs: [1, 2], maxNewTokens: 2), speculation: SpeculationOptions(mode: .mtp))
        }
    }
}
