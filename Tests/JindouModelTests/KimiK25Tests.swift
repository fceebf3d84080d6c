import Foundation
import JindouModel
import JindouTestSupport
import Testing

/// Kimi-K2.5 against transformers on `kimi-k25-tiny` (a Hub-layout checkpoint): MoonViT's
/// intermediate and final outputs, and the text model's logits and greedy tokens with 0, 1
/// and 2 images, fed the processor's own pixel values (preprocessing is tested on its own).
@Suite("Kimi-K2.5 equals transformers")
struct KimiK25Tests {
    static let fixture = "kimi-k25-tiny"

    struct Loaded {
        let golden: Golden
        let tensors: SafetensorsFile
        let engine: InferenceEngine
    }

    func load() async throws -> Loaded {
        let (golden, tensors) = try GoldenSet(fixture: Self.fixture, stem: "golden").load()
        return Loaded(golden: golden, tensors: tensors, engine: try await EngineCache.shared.engine(Self.fixture))
    }

    @Test("the Hub config reads as Kimi-K2's text model with MoonViT")
    func description() async throws {
        let d = try await load().engine.description
        #expect(d.architecture == .kimiK25)
        #expect(d.textPrefix == "language_model.model." && d.lmHeadName == "language_model.lm_head.weight")
        #expect(d.latentAttention != nil && d.attention.mropeSection == nil)
        let v = try #require(d.vision)
        #expect(v.kind == .moonViT && v.positionGridSide == 8 && v.spatialMergeSize == 2 && v.patchFeatures == 3 * 14 * 14)
    }

    @Test("vision tower: merged, projected features equal get_image_features")
    func visionFeatures() async throws {
        let loaded = try await load()
        var checked = 0
        for c in loaded.golden.cases where c.hasImages {
            let images = try c.pixelPatches(loaded.tensors)
            let features = try #require(loaded.engine.model.vision).encode(images)
            let expected = try loaded.tensors.tensor("case\(c.index).image_embeds").floats()
            #expect(features.embeddings.count == expected.count, "\(c.name)")
            #expect(maxAbsDifference(features.embeddings, expected) <= 1e-4, "\(c.name) image_embeds")
            #expect(features.deepstack.isEmpty)
            checked += 1
        }
        #expect(checked >= 3)
    }

    @Test("prefill logits, decode logits and greedy tokens with 0, 1 and 2 images")
    func logitsAndTokens() async throws {
        let loaded = try await load()
        for c in loaded.golden.cases {
            let multimodal = try c.multimodal(loaded.tensors, engine: loaded.engine)
            #expect((multimodal == nil) == !c.hasImages)
            if let multimodal {  // plain positions: no M-RoPE
                #expect((0..<c.promptIDs.count).allSatisfy { multimodal.ropePosition(at: $0) == SIMD3(repeating: $0) })
                #expect(multimodal.ropeDelta == 0)
            }
            let (worst, tokens) = try await c.replay(on: loaded.engine, tensors: loaded.tensors, multimodal: multimodal)
            #expect(worst <= 1e-4, "\(c.name): max |Δlogit| \(worst)")
            #expect(tokens == c.greedyNewTokens, "\(c.name)")
        }
    }

    @Test("videos and images that do not match their tokens are refused")
    func refusals() async throws {
        let loaded = try await load()
        let c = try #require(loaded.golden.cases.first { $0.imageGridTHW?.count == 1 })
        let images = try c.pixelPatches(loaded.tensors)
        #expect(throws: VisionError.self) { try loaded.engine.multimodal(tokens: c.promptIDs, images: images + images) }
        var clip = images[0]
        clip.grid.t = 2
        clip.values += clip.values
        #expect(throws: VisionError.self) { try loaded.engine.multimodal(tokens: c.promptIDs, images: [clip]) }
    }

    @Test("config fields MoonViT cannot honour are refused by name")
    func configErrors() throws {
        func refused(_ edit: (inout [String: Any]) -> Void) throws -> String { try configVerdict(fixture: Self.fixture, edit) }
        func vision(_ key: String, _ value: Any) -> (inout [String: Any]) -> Void {
            { config in
                var v = config["vision_config"] as! [String: Any]
                v[key] = value
                config["vision_config"] = v
            }
        }
        #expect(try refused(vision("pos_emb_width", 6)).contains("vision_config.pos_emb_width"))
        #expect(try refused(vision("rope_parameters", ["rope_type": "default", "rope_theta": 10000.0])).contains("rope_type"))
        #expect(try refused(vision("hidden_act", "relu")).contains("vision_config.hidden_act"))
        #expect(try refused(vision("merge_kernel_size", [2, 3])).contains("merge_kernel_size"))
        #expect(try refused { $0["projection_hidden_size"] = 48 }.contains("projection_hidden_size"))
        #expect(try refused { $0["architectures"] = ["Kimi_K25ForConditionalGeneration"] } == "accepted")
    }
}

extension Golden.Case {
    /// Runs the case on `engine` (prefill over the prompt, then greedy decoding) and returns the
    /// largest |Δlogit| against the golden prefill and decode logits, and the tokens chosen.
    func replay(on engine: InferenceEngine, tensors: SafetensorsFile, multimodal: MultimodalPrompt?) async throws
        -> (worst: Float, tokens: [Int])
    {
        let expected = try rows(tensors.tensor("case\(index).prefill_logits"))
        let actual = try await engine.promptLogits(promptIDs, expertsPerToken: experts, multimodal: multimodal)
        var worst: Float = 0
        for (a, e) in zip(actual, expected) { worst = max(worst, maxAbsDifference(a, e)) }
        var request = GenerationRequest(promptTokenIDs: promptIDs, maxNewTokens: maxNewTokens, expertsPerToken: experts,
                                        stopTokenIDs: [])
        request.multimodal = multimodal
        let collected = LogitsCollector()
        let result = try await engine.generate(request, onStepLogits: { collected.append($0) })
        let steps = try rows(tensors.tensor("case\(index).generated_logits"))
        for (a, e) in zip(collected.rows, steps) { worst = max(worst, maxAbsDifference(a, e)) }
        return (worst, result.tokenIDs)
    }
}
