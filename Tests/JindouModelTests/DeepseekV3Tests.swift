import Foundation
import JindouModel
import JindouNumerics
import JindouRouting
import JindouTestSupport
import Testing

/// DeepSeek-V3 family specifics beyond the shared golden tests (which run every fixture in
/// the automatic MLA mode): both MLA forms against transformers, the latent-only cache,
/// YaRN numbers, FP8 block scales, MTP layers, Kimi-K2's model_type.
@Suite("DeepSeek-V3 family: MLA forms, latent cache, YaRN, FP8, MTP")
struct DeepseekV3Tests {
    static let fixtures = ["deepseek-v3-tiny", "deepseek-v3-tiny-noq", "kimi-k2-tiny", "deepseek-v3-tiny-fp8"]
    static let forms: [LatentAttentionMode] = [.absorbed, .expanded]

    func engine(_ fixture: String, mode: LatentAttentionMode) throws -> InferenceEngine {
        try engineVariant(fixture) { $0.latentAttentionMode = mode }
    }

    /// Absorbed prefill + absorbed decode, and expanded prefill + expanded decode, each
    /// against transformers: every prompt position, every decode step, greedy tokens.
    @Test("each MLA form alone equals transformers", arguments: fixtures, forms)
    func formEqualsTransformers(fixture: String, mode: LatentAttentionMode) async throws {
        let engine = try engine(fixture, mode: mode)
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        var worst: Float = 0
        for c in golden.cases {
            let expected = try rows(tensors.tensor("case\(c.index).prefill_logits"))
            let actual = try await engine.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            for (a, e) in zip(actual, expected) { worst = max(worst, maxAbsDifference(a, e)) }
            let steps = try rows(tensors.tensor("case\(c.index).generated_logits"))
            let collected = LogitsCollector()
            let result = try await engine.generate(
                GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens, expertsPerToken: c.experts,
                                  stopTokenIDs: []),
                onStepLogits: { collected.append($0) })
            for (a, e) in zip(collected.rows, steps) { worst = max(worst, maxAbsDifference(a, e)) }
            #expect(result.tokenIDs == c.greedyNewTokens, "\(fixture) \(mode) case \(c.name)")
        }
        #expect(worst <= 1e-4, "\(fixture) \(mode): max |Δlogit| \(worst)")
    }

    @Test("absorbed and expanded forms agree with each other on a long prompt")
    func formsAgree() async throws {
        let (golden, _) = try GoldenSet(fixture: "deepseek-v3-tiny", stem: "golden").load()
        let longest = golden.cases.max { $0.promptIDs.count < $1.promptIDs.count }!
        #expect(longest.promptIDs.count >= 64)  // past original_max_position_embeddings
        let absorbed = try await engine("deepseek-v3-tiny", mode: .absorbed).promptLogits(longest.promptIDs)
        let expanded = try await engine("deepseek-v3-tiny", mode: .expanded).promptLogits(longest.promptIDs)
        for (position, (a, e)) in zip(absorbed, expanded).enumerated() {
            #expect(maxAbsDifference(a, e) <= 1e-5, "position \(position)")
        }
    }

    @Test("automatic mode absorbs decode steps and expands long prefill chunks")
    func automaticChoice() throws {
        let description = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path("deepseek-v3-tiny")))
        let m = try #require(description.latentAttention)
        // kv_lora 32, nope 16, v 16, rope 8: expansion costs 32·32 per position, absorption
        // 2·32 + 8 − 24 − 16 = 32 more per token and position: break-even at 32 tokens.
        #expect(!m.prefersExpanded(tokens: 1))
        #expect(!m.prefersExpanded(tokens: 32))
        #expect(m.prefersExpanded(tokens: 33))
    }

    /// The decode cache holds kv_lora_rank + qk_rope_head_dim floats per token and layer,
    /// and no values: measured on a cache after a real generation.
    @Test("KV cache bytes per token equal the latent size")
    func latentCacheSize() async throws {
        let checkpoint = try Checkpoint(directory: Fixtures.path("deepseek-v3-tiny"))
        let description = try ModelDescription(checkpoint: checkpoint)
        let m = try #require(description.latentAttention)
        let latentBytes = description.layerCount * (m.keyValueLoraRank + m.ropeDimension) * MemoryLayout<Float>.size
        #expect(description.keyValueCacheBytesPerToken == latentBytes)
        let model = try DecoderModel(description: description, checkpoint: checkpoint)
        let cache = model.makeCache()
        #expect(cache.bytesPerToken == latentBytes)
        let experts = try ExpertShard(description: description, checkpoint: checkpoint, keys: description.allExperts)
        _ = try await model.forward([SequenceStep(cache: cache, tokens: Array(1...40))], experts: experts)
        #expect(cache.length == 40)
        #expect(cache.allocatedBytes == cache.capacity * latentBytes)
        // What full K/V would take: heads × (qk_head_dim + v_head_dim) per token and layer.
        let expandedBytes = description.layerCount * m.heads * (m.queryKeyDimension + m.valueDimension) * MemoryLayout<Float>.size
        #expect(latentBytes * 3 < expandedBytes)
    }

    /// The rotary and softmax-scale numbers transformers used, recorded by the generator.
    @Test("YaRN and interleave settings equal transformers'", arguments: fixtures)
    func ropeNumbers(fixture: String) throws {
        let description = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path(fixture)))
        let golden = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture) + "/golden.json"))) as! [String: Any]
        let rope = golden["rope"] as! [String: Any]
        let rotary = description.makeRotaryEmbedding()
        let expectedFrequencies = (rope["inv_freq"] as! [Double]).map(Float.init)
        #expect(rotary.inverseFrequencies.count == expectedFrequencies.count)
        for (a, e) in zip(rotary.inverseFrequencies, expectedFrequencies) {
            #expect(abs(a - e) <= e.ulp, "\(fixture): inv_freq \(a) vs \(e)")
        }
        #expect(abs(Double(rotary.attentionScaling) - (rope["attention_factor"] as! Double)) < 1e-6)
        #expect(rotary.interleaved == (rope["rope_interleave"] as! Bool))
        let scale = try #require(description.latentAttention).softmaxScale
        #expect(abs(Double(scale) - (rope["softmax_scale"] as! Double)) < 1e-7)
    }

    @Test("the MTP layer is recognised and never mapped")
    func predictionLayerIgnored() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.path("deepseek-v3-tiny-noq"))
        let description = try ModelDescription(checkpoint: checkpoint)
        #expect(description.ignoredPredictionLayers == 1)
        #expect(description.layerCount == 3)
        let mtpPrefix = WeightNames.layer(description.layerCount)
        #expect(checkpoint.weightMap.keys.contains { $0.hasPrefix(mtpPrefix + "eh_proj") })
        let model = try DecoderModel(description: description, checkpoint: checkpoint)
        let experts = try ExpertShard(description: description, checkpoint: checkpoint, keys: description.allExperts)
        #expect(!model.tensors.tensors.keys.contains { $0.hasPrefix(mtpPrefix) })
        #expect(!experts.tensors.tensors.keys.contains { $0.hasPrefix(mtpPrefix) })
    }

    @Test("model_type kimi_k2 is served as DeepseekV3ForCausalLM")
    func kimiModelType() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("kimi-k2-tiny") + "/config.json"))
        var config = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        #expect(config["model_type"] as? String == "kimi_k2")
        config.removeValue(forKey: "architectures")
        let description = try ModelDescription(configJSON: try JSONSerialization.data(withJSONObject: config), path: "c")
        #expect(description.architecture == .deepseekV3)
        #expect(description.expertCount == 24)
    }

    @Test("elastic K beyond the allowed groups takes extra groups, best first")
    func elasticKWithGroups() async throws {
        // 16 experts in 4 groups of 4, topk_group 2: K ≤ 8 stays in 2 groups; K = 12 needs 3.
        let engine = try await EngineCache.shared.engine("deepseek-v3-tiny")
        let router = try #require(engine.model.anyRouter)
        let hidden = (0..<64).map { Float(sin(Double($0) * 0.7)) }
        for (k, groups) in [(8, 2), (12, 3), (16, 4)] {
            let routing = hidden.withUnsafeBufferPointer { router.route(hidden: $0.baseAddress!, tokens: 1) { _ in .fixed(k) } }
            let experts = routing.choices(ofToken: 0).map(\.expert)
            #expect(experts.count == k)
            #expect(Set(experts.map { $0 / 4 }).count == groups, "K \(k): \(experts)")
        }
        let result = try await engine.generate(GenerationRequest(promptTokenIDs: [3, 5, 7], maxNewTokens: 3,
                                                                 expertsPerToken: .fixed(12), stopTokenIDs: []))
        #expect(result.tokenIDs.count == 3)
    }
}

/// FP8 block-scaled checkpoints: the scales are found, checked and applied.
@Suite("FP8 block-scaled weights")
struct FP8CheckpointTests {
    let fixture = "deepseek-v3-tiny-fp8"

    @Test func quantisedWeightsCarryTheirBlockScales() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.path(fixture))
        let description = try ModelDescription(checkpoint: checkpoint)
        #expect(description.weightQuantization == BlockQuantization(blockRows: 32, blockColumns: 32))
        let model = try DecoderModel(description: description, checkpoint: checkpoint)
        guard case .latent(let attention) = model.layers[0].attention else {
            Issue.record("expected MLA")
            return
        }
        #expect(attention.keyValueB?.dtype == .float8E4M3)
        #expect(attention.keyValueB?.blockScales != nil)
        // The router and embeddings stay F32.
        #expect(model.embedding.dtype == .float32)
        let shard = try ExpertShard(description: description, checkpoint: checkpoint, keys: [description.allExperts[0]])
        let expert = try #require(shard.experts[description.allExperts[0]])
        #expect(expert.down.dtype == .float8E4M3)
        // moe_intermediate 48 with 32-wide blocks: the down projection has a partial column block.
        #expect(expert.down.blockScales?.blockColumnCount == 2)
    }

    /// A copy of the fixture with one tensor replaced, written through the real loader path.
    func damagedCopy(_ edit: (inout [String: Any], inout [String: (dtype: DType, shape: [Int], bytes: Data)]) -> Void) throws -> String {
        let source = Fixtures.path(fixture)
        let directory = Scratch.directory + "fp8-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var config = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: source + "/config.json"))) as! [String: Any]
        let file = try SafetensorsFile(path: source + "/model.safetensors")
        var tensors: [String: (dtype: DType, shape: [Int], bytes: Data)] = [:]
        for name in file.names {
            let view = try file.tensor(name)
            tensors[name] = (view.dtype, view.shape, Data(bytes: view.pointer, count: view.byteCount))
        }
        edit(&config, &tensors)
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: directory + "/config.json"))
        var writer = SafetensorsWriter()
        for (name, t) in tensors.sorted(by: { $0.key < $1.key }) {
            writer.append(SafetensorsWriter.Tensor(name: name, dtype: t.dtype, shape: t.shape, bytes: t.bytes))
        }
        try writer.write(to: directory + "/model.safetensors")
        return directory
    }

    func loadError(_ directory: String) -> String? {
        do {
            let checkpoint = try Checkpoint(directory: directory)
            let description = try ModelDescription(checkpoint: checkpoint)
            _ = try DecoderModel(description: description, checkpoint: checkpoint)
            _ = try ExpertShard(description: description, checkpoint: checkpoint, keys: description.allExperts)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func missingScalesAreNamed() throws {
        let name = "model.layers.1.mlp.experts.3.up_proj.weight"
        let directory = try damagedCopy { _, tensors in tensors.removeValue(forKey: name + "_scale_inv") }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let error = try #require(loadError(directory))
        #expect(error.contains("'\(name)': is F8_E4M3 but its block scales '\(name)_scale_inv' are missing"), "\(error)")
    }

    @Test func wrongScaleShapeIsNamed() throws {
        let name = "model.layers.0.self_attn.kv_b_proj.weight_scale_inv"
        let directory = try damagedCopy { _, tensors in
            let scales = tensors[name]!
            tensors[name] = (scales.dtype, [scales.shape[0] * scales.shape[1]], scales.bytes)
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let error = try #require(loadError(directory))
        #expect(error.contains("'\(name)' has shape"), "\(error)")
    }

    @Test func nonPositiveScaleIsRefused() throws {
        let name = "model.layers.0.self_attn.o_proj.weight_scale_inv"
        let directory = try damagedCopy { _, tensors in
            var scales = tensors[name]!
            scales.bytes.replaceSubrange(0..<4, with: withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { Data($0) })
            tensors[name] = scales
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let error = try #require(loadError(directory))
        #expect(error.contains("'\(name)': block scale 0 is nan"), "\(error)")
    }

    @Test func fp8WithoutQuantizationConfigIsRefused() throws {
        let directory = try damagedCopy { config, _ in config.removeValue(forKey: "quantization_config") }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let error = try #require(loadError(directory))
        #expect(error.contains("is F8_E4M3 but config.json has no quantization_config"), "\(error)")
    }

    @Test func otherQuantizationMethodsAreRefusedByName() throws {
        let directory = try damagedCopy { config, _ in
            config["quantization_config"] = ["quant_method": "gptq", "bits": 4]
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let error = try #require(loadError(directory))
        #expect(error.contains("quantization_config.quant_method': 'gptq' is not supported"), "\(error)")
    }
}
