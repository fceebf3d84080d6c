import Foundation
import JindouModel
import JindouNumerics
import JindouTestSupport
import Testing

/// `--model FILE.gguf`: a GGUF file loads into the same engine a checkpoint directory does,
/// with its weights read as stored.
@Suite("GGUF loading")
struct GGUFLoadingTests {
    /// Written once by llama.cpp's convert_hf_to_gguf.py from `qwen3-moe-tiny-sharded`
    /// (tools/fixture_gguf.py), F32.
    static let llamaCppFile = Fixtures.path("gguf/qwen3-moe-tiny-sharded-f32.gguf")

    /// Fixtures tools/fixture_gguf.py converted with llama.cpp's converter (F32), each to
    /// `gguf/<fixture>-f32.gguf`: qwen3moe, glm4moe with q/k norms, expert groups and a
    /// routed scaling factor, glm4moe with attention biases (both declare one MTP layer),
    /// minimax-m2, dots1 (multi-head), exaone-moe (sliding/NoPE layers, expert groups) and
    /// afmoe (sandwich norms, output gate, 3:1 sliding/NoPE, μP) and ernie4_5-moe (interleaved
    /// rotary, [1, E] selection bias, a SentencePiece vocabulary), the last four converted with
    /// a staged tokenizer and config keys (tools/fixture_gguf.py).
    static let llamaCppConverted = ["qwen3-moe-tiny-sharded", "glm4-moe-tiny", "glm4-moe-tiny-legacy", "minimax-m2-tiny",
                                    "dots1-tiny-mha", "exaone-moe-tiny", "afmoe-tiny-every4", "ernie45-moe-tiny-ff64"]

    static func llamaCppFile(_ fixture: String) -> String { Fixtures.path("gguf/\(fixture)-f32.gguf") }

    /// What a description computes with, without what only names things (stop and BOS ids,
    /// the declared dtype, the count of ignored MTP layers, the names inside a MoE block —
    /// a GGUF file is read under the shared names whatever the checkpoint called them).
    static func computed(_ description: ModelDescription) -> ModelDescription {
        var d = description
        (d.eosTokenIDs, d.bosTokenID, d.declaredDType, d.ignoredPredictionLayers) = ([], nil, nil, 0)
        d.moeNames = MoENames()
        return d
    }

    /// `jindouctl quantize` of a fixture into a temporary directory (removed by the caller).
    static func quantize(_ fixture: String, _ extra: [String] = []) throws -> (directory: String, file: String) {
        let directory = Scratch.directory + "jindou-gguf-load-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = directory + "/\(fixture).gguf"
        let run = try Executable("jindouctl").run(["quantize", "--experts", "q8_0", "--model", Fixtures.path(fixture), "--out", file] + extra)
        #expect(run.status == 0, "\(run.stderr)")
        return (directory, file)
    }

    /// Prompts of every golden case of `fixture`.
    static func prompts(_ fixture: String) throws -> [Golden.Case] {
        try GoldenSet(fixture: fixture, stem: "golden").load().0.cases
    }

    /// qwen3-moe-tiny: a dense layer (mlp_only_layers), norm_topk_prob false, untied head.
    /// glm4-moe-tiny: a leading dense layer, shared experts, sigmoid routing with correction
    /// bias, two expert groups, routed scaling 2.5, q/k norms, partial rotary, a declared MTP
    /// layer. glm4-moe-tiny-legacy: attention biases, no q/k norms, sharded, K = 3.
    @Test("jindouctl quantize q8_0 → GGUF equals the checkpoint re-encoded in process, bit for bit",
          arguments: ["qwen3-moe-tiny", "glm4-moe-tiny", "glm4-moe-tiny-legacy"])
    func quantizedFileEqualsReencodedCheckpoint(fixture: String) async throws {
        // The embedding is written F32: the engine keeps the checkpoint's embedding too.
        let (directory, file) = try Self.quantize(fixture, ["--token-embedding-type", "f32"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let gguf = try InferenceEngine.load(directory: file)
        let reference = try InferenceEngine.load(directory: Fixtures.path(fixture), expertFormat: .q8_0, denseFormat: .q8_0)
        #expect(Self.computed(gguf.description) == Self.computed(reference.description))
        let shard = try #require(gguf.experts as? ExpertShard)
        #expect(shard.experts.values.allSatisfy { $0.gate.blockFormat == .q8_0 && $0.down.blockFormat == .q8_0 })
        for c in try Self.prompts(fixture) {
            let a = try await gguf.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            let b = try await reference.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            #expect(a == b, "case \(c.name): max |Δlogit| \(zip(a, b).map { maxAbsDifference($0, $1) }.max() ?? 0)")
            let request = GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens, expertsPerToken: c.experts,
                                            stopTokenIDs: [])
            let tokens = try await gguf.generate(request).tokenIDs
            #expect(tokens == (try await reference.generate(request).tokenIDs), "case \(c.name)")
        }
    }

    @Test("the default Q8_0 token embedding changes logits by its rounding only")
    func quantizedEmbedding() async throws {
        let (directory, file) = try Self.quantize("qwen3-moe-tiny")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let gguf = try InferenceEngine.load(directory: file)
        #expect(gguf.model.embedding.blockFormat == .q8_0)
        let reference = try InferenceEngine.load(directory: Fixtures.path("qwen3-moe-tiny"), expertFormat: .q8_0, denseFormat: .q8_0)
        // Q8_0 rounds each embedding value by at most 1/254 of its block's largest magnitude.
        // Measured: max |Δlogit| 0.07 (5 tokens) … 0.46 (40 tokens) on logits spanning about
        // ±10. Greedy tokens then agree wherever the reference's best two logits are further
        // apart than that change (one 40-token case decodes into a near tie and drifts).
        for c in try Self.prompts("qwen3-moe-tiny") {
            let a = try await gguf.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            let b = try await reference.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            let difference = zip(a, b).map { maxAbsDifference($0, $1) }.max() ?? 0
            #expect(difference > 0 && difference < 1, "case \(c.name): max |Δlogit| \(difference)")
            let last = b.last!, sorted = last.sorted(by: >)
            if sorted[0] - sorted[1] > 2 * difference {
                #expect(a.last!.firstIndex(of: a.last!.max()!) == last.firstIndex(of: sorted[0]), "case \(c.name)")
            }
        }
    }

    /// Measured max |Δlogit| over every case and position (prefill) and step (decode):
    /// qwen3-moe-tiny-sharded 2.7e-5 / 1.3e-5, glm4-moe-tiny 3.3e-6 / 2.9e-6,
    /// glm4-moe-tiny-legacy 2.2e-6 / 2.2e-6 — the safetensors checkpoints' own, as these
    /// files give the same logits bit for bit.
    @Test("a GGUF written by llama.cpp's converter equals transformers' goldens", arguments: llamaCppConverted)
    func llamaCppConvertedFileEqualsTransformers(fixture: String) async throws {
        let engine = try InferenceEngine.load(directory: Self.llamaCppFile(fixture))
        let checkpoint = try InferenceEngine.load(directory: Fixtures.path(fixture))
        // The metadata describes the model config.json does (MTP layers left out).
        #expect(Self.computed(engine.description) == Self.computed(checkpoint.description))
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        let bound = TransformersGoldenTests.fp32Tolerance
        for c in golden.cases {
            let expected = try rows(tensors.tensor("case\(c.index).prefill_logits"))
            let actual = try await engine.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            #expect(actual.count == expected.count)
            for (position, (a, e)) in zip(actual, expected).enumerated() {
                #expect(maxAbsDifference(a, e) <= bound, "case \(c.name) position \(position): max |Δlogit| \(maxAbsDifference(a, e))")
            }
            // Same F32 weights, same kernels: the same numbers as the safetensors checkpoint.
            #expect(actual == (try await checkpoint.promptLogits(c.promptIDs, expertsPerToken: c.experts)), "case \(c.name)")
            let decoded = try rows(tensors.tensor("case\(c.index).generated_logits"))
            let steps = LogitsCollector()
            let result = try await engine.generate(GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens,
                                                                     expertsPerToken: c.experts, stopTokenIDs: []),
                                                   onStepLogits: { steps.append($0) })
            #expect(steps.rows.count == decoded.count)
            for (step, (a, e)) in zip(steps.rows, decoded).enumerated() {
                #expect(maxAbsDifference(a, e) <= bound, "case \(c.name) step \(step): max |Δlogit| \(maxAbsDifference(a, e))")
            }
            #expect(result.tokenIDs == c.greedyNewTokens, "case \(c.name)")
        }
    }

    /// Hunyuan-A13B: the converter folds NTK-alpha into `rope.freq_base` (in f32) and writes a
    /// 256k context; otherwise the file describes the checkpoint, and its logits are
    /// transformers' within fp32 tolerance.
    @Test("hunyuan-moe: the converter's file equals transformers' goldens")
    func hunyuanFileEqualsTransformers() async throws {
        let fixture = "hunyuan-moe-tiny-128"
        let engine = try InferenceEngine.load(directory: Self.llamaCppFile(fixture))
        let checkpoint = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path(fixture)))
        var described = Self.computed(engine.description)
        #expect(abs(described.attention.ropeTheta - checkpoint.attention.ropeTheta) <= 1e-7 * checkpoint.attention.ropeTheta)
        #expect(described.maxPositionEmbeddings == 262_144)
        (described.attention.ropeTheta, described.maxPositionEmbeddings) = (checkpoint.attention.ropeTheta, checkpoint.maxPositionEmbeddings)
        var expected = Self.computed(checkpoint)
        expected.moeNames = described.moeNames
        #expect(described == expected)
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        for c in golden.cases {
            let expectedRows = try rows(tensors.tensor("case\(c.index).prefill_logits"))
            let actual = try await engine.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            for (position, (a, e)) in zip(actual, expectedRows).enumerated() {
                #expect(maxAbsDifference(a, e) <= TransformersGoldenTests.fp32Tolerance, "case \(c.name) position \(position)")
            }
            let result = try await engine.generate(GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens,
                                                                     expertsPerToken: c.experts, stopTokenIDs: []))
            #expect(result.tokenIDs == c.greedyNewTokens, "case \(c.name)")
        }
    }

    @Test("glm4moe: MTP blocks counted in block_count are never described nor mapped")
    func glm4MoePredictionLayersAreIgnored() async throws {
        let source = try GGUFCheckpoint(path: Self.llamaCppFile("glm4-moe-tiny"))
        #expect(source.file.metadata["glm4moe.block_count"]?.integer == 4)
        #expect(source.description.layerCount == 3 && source.description.ignoredPredictionLayers == 1)
        // A file that carries the MTP block's tensors (as GLM-4.5 conversions do) loads the same.
        let withPrediction = try Self.rewritten(from: Self.llamaCppFile("glm4-moe-tiny"), adding: [
            .init(name: "blk.3.nextn.eh_proj.weight", dimensions: [128, 64], type: .f32) { write in
                try [Float](repeating: .nan, count: 128 * 64).withUnsafeBytes { try write($0) }
            },
            .init(name: "blk.3.attn_norm.weight", dimensions: [64], type: .f32) { write in
                try [Float](repeating: .nan, count: 64).withUnsafeBytes { try write($0) }
            },
        ])
        defer { try? FileManager.default.removeItem(atPath: withPrediction) }
        let engine = try InferenceEngine.load(directory: withPrediction)
        #expect(engine.description == source.description && engine.model.layers.count == 3)
        let d = engine.description
        let requested = d.nonExpertTensors().map(\.name) + d.allExperts.flatMap { d.expertTensors($0).map(\.name) }
        #expect(!requested.contains { $0.hasPrefix("model.layers.3.") })
        // The NaN-filled MTP tensors touch nothing.
        let prompt = [39, 85, 270, 195, 38]
        let original = try InferenceEngine.load(directory: Self.llamaCppFile("glm4-moe-tiny"))
        #expect(try await engine.promptLogits(prompt) == original.promptLogits(prompt))
    }

    @Test("an expert is one slice of the stacked tensor, mapped alone")
    func expertsAreMappedOneByOne() throws {
        let source = try GGUFCheckpoint(path: Self.llamaCppFile)
        let d = source.description
        let key = ExpertKey(layer: 1, expert: 5)
        let shard = try ExpertShard(description: d, checkpoint: source, keys: [key])
        let file = try GGUFFile(path: Self.llamaCppFile)
        #expect(try shard.experts[key]!.up.floatValues() == file.matrix("blk.1.ffn_up_exps.weight", slice: 5).floatValues())
        #expect(try shard.experts[key]!.down.floatValues() == file.matrix("blk.1.ffn_down_exps.weight", slice: 5).floatValues())
        let expertBytes = 3 * d.hiddenSize * d.moeIntermediateSize * 4
        #expect(try source.byteCount(of: d.expertTensors(key)) == expertBytes)
        // Three slices of 8 KiB each, in three stacked tensors: a few pages, not the file.
        #expect(shard.tensors.mappedBytes <= expertBytes + 6 * 4096)
        let size = try FileManager.default.attributesOfItem(atPath: Self.llamaCppFile)[.size] as! Int
        #expect(shard.tensors.mappedBytes < size / 10)
        // Coordinator and worker agree on the identity of a file, not of its path.
        #expect(try source.fingerprint() == GGUFCheckpoint(path: Self.llamaCppFile).fingerprint())
    }

    // MARK: - Damaged and unsupported files

    /// A llama.cpp fixture (default: this suite's) rewritten with `edit` applied to its
    /// metadata, only the tensors `keep` accepts, those `replace` gives instead of a tensor,
    /// and `extra` tensors added at the end.
    static func rewritten(from source: String = llamaCppFile, metadata edit: (inout [(String, GGUFWriter.Value)]) -> Void = { _ in },
                          tensors keep: (GGUFTensorInfo) -> Bool = { _ in true },
                          replace: (GGUFTensorInfo) throws -> GGUFWriter.Tensor? = { _ in nil },
                          adding extra: [GGUFWriter.Tensor] = []) throws -> String {
        let file = try GGUFFile(path: source)
        var writer = GGUFWriter()
        writer.metadata = file.metadataKeys.compactMap { key in writerValue(file.metadata[key]!).map { (key, $0) } }
        edit(&writer.metadata)
        for info in file.tensors where keep(info) {
            if let replacement = try replace(info) {
                writer.tensors.append(replacement)
                continue
            }
            writer.tensors.append(.init(name: info.name, dimensions: info.dimensions, type: info.type) { write in
                try write(try file.bytes(of: info))
            })
        }
        writer.tensors += extra
        let path = Scratch.directory + "jindou-gguf-damaged-\(UUID().uuidString).gguf"
        try writer.write(to: path)
        return path
    }

    static func writerValue(_ value: GGUFValue) -> GGUFWriter.Value? {
        switch value {
        case .uint(let v): return v <= UInt64(UInt32.max) ? .u32(UInt32(v)) : .u64(v)
        case .int(let v): return .i32(Int32(v))
        case .float(let v): return .f32(Float(v))
        case .bool(let v): return .bool(v)
        case .string(let v): return .string(v)
        case .array(let list):
            if let strings = list.map(\.string) as? [String] { return .strings(strings) }
            let bools = list.compactMap { if case .bool(let b) = $0 { b } else { nil } }
            if !list.isEmpty, bools.count == list.count { return .bools(bools) }
            return .i32s(list.map { Int32($0.integer ?? 0) })
        }
    }

    func loadError(_ path: String) -> String {
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try InferenceEngine.load(directory: path)
            return "loaded"
        } catch let error as GGUFError {
            #expect(error.path == path)
            return error.description
        } catch {
            return "not a GGUFError: \(error)"
        }
    }

    static func set(_ key: String, _ value: GGUFWriter.Value) -> (inout [(String, GGUFWriter.Value)]) -> Void {
        { metadata in
            if let i = metadata.firstIndex(where: { $0.0 == key }) { metadata[i].1 = value } else { metadata.append((key, value)) }
        }
    }

    @Test func unsupportedArchitectureIsNamed() throws {
        let message = loadError(try Self.rewritten(metadata: Self.set("general.architecture", .string("llama"))))
        let supported = GGUFCheckpoint.supportedArchitectures
        #expect(supported.count == 16 && supported.contains("deepseek32") && supported.contains("glm-dsa") && supported.contains("qwen3next"))
        #expect(message.contains("architecture 'llama' is not supported (supported: \(supported.joined(separator: ", ")))"), "\(message)")
    }

    @Test func missingTensorIsNamed() throws {
        let message = loadError(try Self.rewritten(tensors: { $0.name != "blk.1.attn_k.weight" }))
        #expect(message.contains("missing tensor 'blk.1.attn_k.weight' (model.layers.1.self_attn.k_proj.weight)"), "\(message)")
        let experts = loadError(try Self.rewritten(tensors: { $0.name != "blk.2.ffn_down_exps.weight" }))
        #expect(experts.contains("missing tensor 'blk.2.ffn_down_exps.weight'"), "\(experts)")
    }

    @Test func shapeThatDisagreesWithTheMetadataIsNamed() throws {
        let message = loadError(try Self.rewritten(metadata: Self.set("qwen3moe.attention.head_count_kv", .u32(4))))
        #expect(message.contains("tensor 'blk.0.attn_k.weight' has shape [32, 64]"), "\(message)")
        #expect(message.contains("implies [64, 64]"), "\(message)")
    }

    @Test func badOrMissingMetadataIsNamed() throws {
        let missing = loadError(try Self.rewritten(metadata: { $0.removeAll { $0.0 == "qwen3moe.block_count" } }))
        #expect(missing.contains("metadata 'qwen3moe.block_count' is missing"), "\(missing)")
        let type = loadError(try Self.rewritten(metadata: Self.set("qwen3moe.expert_count", .string("eight"))))
        #expect(type.contains("metadata 'qwen3moe.expert_count' is not a non-negative integer"), "\(type)")
        let range = loadError(try Self.rewritten(metadata: Self.set("qwen3moe.expert_used_count", .u32(9))))
        #expect(range.contains("num_experts_per_tok") && range.contains("9 is not in 1…8"), "\(range)")
        let rope = loadError(try Self.rewritten(metadata: Self.set("qwen3moe.rope.scaling.type", .string("yarn"))))
        #expect(rope.contains("'qwen3moe.rope.scaling.type' 'yarn' is not supported"), "\(rope)")
    }

    @Test func badGlm4MoeMetadataIsNamed() throws {
        let glm = Self.llamaCppFile("glm4-moe-tiny")
        func message(_ edit: @escaping (inout [(String, GGUFWriter.Value)]) -> Void) throws -> String {
            loadError(try Self.rewritten(from: glm, metadata: edit))
        }
        let softmax = try message(Self.set("glm4moe.expert_gating_func", .u32(1)))
        #expect(softmax.contains("metadata 'glm4moe.expert_gating_func' is 1 (softmax); GLM4-MoE routes with sigmoid (2)"), "\(softmax)")
        for key in ["glm4moe.expert_count", "glm4moe.expert_shared_count", "glm4moe.expert_feed_forward_length", "glm4moe.context_length"] {
            let missing = try message { $0.removeAll { $0.0 == key } }
            #expect(missing.contains("metadata '\(key)' is missing"), "\(missing)")
        }
        let mtp = try message(Self.set("glm4moe.nextn_predict_layers", .u32(4)))
        #expect(mtp.contains("metadata 'glm4moe.nextn_predict_layers' is 4, which leaves no decoder layer of block_count 4"), "\(mtp)")
        let groups = try message(Self.set("glm4moe.expert_group_used_count", .u32(3)))
        #expect(groups.contains("metadata 'glm4moe.expert_group_used_count' 3 is not in 1…expert_group_count (2)"), "\(groups)")
        let dense = try message(Self.set("glm4moe.leading_dense_block_count", .u32(5)))
        #expect(dense.contains("metadata 'glm4moe.leading_dense_block_count' is 5, more than the 3 decoder layers"), "\(dense)")
        let rope = try message(Self.set("glm4moe.rope.scaling.type", .string("yarn")))
        #expect(rope.contains("'glm4moe.rope.scaling.type' 'yarn' is not supported"), "\(rope)")
        // One more leading dense layer than the file has: the missing tensor is named.
        let shifted = try message(Self.set("glm4moe.leading_dense_block_count", .u32(2)))
        #expect(shifted.contains("missing tensor 'blk.1.ffn_gate.weight' (model.layers.1.mlp.gate_proj.weight)"), "\(shifted)")
    }

    @Test func badDots1ExaoneAndAfmoeFilesAreNamed() throws {
        let dots = Self.llamaCppFile("dots1-tiny-mha")
        let gating = loadError(try Self.rewritten(from: dots, metadata: { $0.removeAll { $0.0 == "dots1.expert_gating_func" } }))
        #expect(gating.contains("metadata 'dots1.expert_gating_func' is missing; llama.cpp cannot route dots.llm1 without it"), "\(gating)")
        let softmax = loadError(try Self.rewritten(from: dots, metadata: Self.set("dots1.expert_gating_func", .u32(1))))
        #expect(softmax.contains("metadata 'dots1.expert_gating_func' is 1 (softmax); dots.llm1 routes with sigmoid (2)"), "\(softmax)")
        let norm = loadError(try Self.rewritten(from: dots, tensors: { !$0.name.hasSuffix("attn_q_norm.weight") && !$0.name.hasSuffix("attn_k_norm.weight") }))
        #expect(norm.contains("missing tensor 'blk.0.attn_q_norm.weight' (dots.llm1 normalises queries and keys per head)"), "\(norm)")
        let exaone = Self.llamaCppFile("exaone-moe-tiny")
        let window = loadError(try Self.rewritten(from: exaone, metadata: { $0.removeAll { $0.0 == "exaone-moe.attention.sliding_window" } }))
        #expect(window.contains("metadata 'exaone-moe.attention.sliding_window' is missing"), "\(window)")
        let pattern = loadError(try Self.rewritten(from: exaone, metadata: Self.set("exaone-moe.attention.sliding_window_pattern", .bools([true]))))
        #expect(pattern.contains("metadata 'exaone-moe.attention.sliding_window_pattern' is not an array of 4 bools"), "\(pattern)")
        let afmoe = Self.llamaCppFile("afmoe-tiny-every4")
        let gate = loadError(try Self.rewritten(from: afmoe, tensors: { !$0.name.hasSuffix("attn_gate.weight") }))
        #expect(gate.contains("missing tensor 'blk.0.attn_gate.weight' (Trinity's attention gate and sandwich norms)"), "\(gate)")
        let post = loadError(try Self.rewritten(from: afmoe, tensors: { $0.name != "blk.2.post_ffw_norm.weight" }))
        #expect(post.contains("missing tensor 'blk.2.post_ffw_norm.weight' (model.layers.2.post_mlp_layernorm.weight)"), "\(post)")
    }

    @Test("exaone-moe and afmoe: which layers slide and rotate, as llama.cpp reads the file")
    func slidingAndRotaryLayersFollowLlamaCpp() throws {
        let exaone = try GGUFCheckpoint(path: Self.llamaCppFile("exaone-moe-tiny")).description
        #expect(exaone.attention.layerWindows == [5, nil, 5, nil] && exaone.attention.layerRotary == [true, false, true, false])
        // Without a per-layer array, the period (default 4): three sliding layers, then one global.
        let period = try GGUFCheckpoint(path: Self.rewritten(from: Self.llamaCppFile("exaone-moe-tiny"), metadata: {
            $0.removeAll { $0.0 == "exaone-moe.attention.sliding_window_pattern" }
        })).description
        #expect(period.attention.layerWindows == [5, 5, 5, nil] && period.attention.layerRotary == [true, true, true, false])
        let afmoe = try GGUFCheckpoint(path: Self.llamaCppFile("afmoe-tiny-every4")).description
        #expect(afmoe.attention.layerWindows == [5, 5, 5, nil] && afmoe.attention.layerRotary == [true, true, true, false])
        #expect(afmoe.embeddingScale == 8 && afmoe.attention.outputGate)
        // No sliding window: every layer full, and every fourth still NoPE (llama.cpp's n_no_rope_layer_step).
        let full = try GGUFCheckpoint(path: Self.rewritten(from: Self.llamaCppFile("afmoe-tiny-every4"), metadata: {
            $0.removeAll { $0.0 == "afmoe.attention.sliding_window" }
        })).description
        #expect(full.attention.layerWindows == [nil, nil, nil, nil] && full.attention.layerRotary == [true, true, true, false])
    }

    @Test func glm4MoeTensorsMissingOrUnlikeAcrossLayersAreNamed() throws {
        let glm = Self.llamaCppFile("glm4-moe-tiny")
        let bias = loadError(try Self.rewritten(from: glm, tensors: { $0.name != "blk.2.exp_probs_b.bias" }))
        #expect(bias.contains("tensor 'blk.2.exp_probs_b.bias' is missing while 'blk.1.exp_probs_b.bias' is present"), "\(bias)")
        let noBias = loadError(try Self.rewritten(from: glm, tensors: { !$0.name.hasSuffix("exp_probs_b.bias") }))
        #expect(noBias.contains("missing tensor 'blk.1.exp_probs_b.bias' (GLM4-MoE selects experts with it)"), "\(noBias)")
        let shared = loadError(try Self.rewritten(from: glm, tensors: { $0.name != "blk.1.ffn_up_shexp.weight" }))
        #expect(shared.contains("missing tensor 'blk.1.ffn_up_shexp.weight' (model.layers.1.mlp.shared_experts.up_proj.weight)"), "\(shared)")
        let norm = loadError(try Self.rewritten(from: glm, tensors: { $0.name != "blk.1.attn_k_norm.weight" }))
        #expect(norm.contains("tensor 'blk.1.attn_k_norm.weight' is missing while 'blk.0.attn_q_norm.weight' is present"), "\(norm)")
        let extra = loadError(try Self.rewritten(from: Self.llamaCppFile("glm4-moe-tiny-legacy"), adding: [
            .init(name: "blk.1.attn_q_norm.weight", dimensions: [16], type: .f32) { write in
                try [Float](repeating: 1, count: 16).withUnsafeBytes { try write($0) }
            },
        ]))
        #expect(extra.contains("tensor 'blk.1.attn_q_norm.weight' is present while 'blk.0.attn_q_norm.weight' is not"), "\(extra)")
        let legacy = Self.llamaCppFile("glm4-moe-tiny-legacy")
        let qkvBias = loadError(try Self.rewritten(from: legacy, tensors: { $0.name != "blk.1.attn_v.bias" }))
        #expect(qkvBias.contains("tensor 'blk.1.attn_v.bias' is missing while 'blk.0.attn_q.bias' is present"), "\(qkvBias)")
    }

    /// blk.0.attn_q.weight's ggml type (after its name, rank and two dimensions) patched to `type`.
    static func withAttentionQueryType(_ type: UInt8) throws -> String {
        var data = try Data(contentsOf: URL(fileURLWithPath: Self.llamaCppFile))
        let name = Data("blk.0.attn_q.weight".utf8)
        let at = try #require(data.range(of: name)).upperBound
        let typeOffset = at + 4 + 2 * 8
        #expect(data[typeOffset] == 0)
        data[typeOffset] = type
        let path = Scratch.directory + "jindou-gguf-type\(type)-\(UUID().uuidString).gguf"
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func unsupportedTensorTypesAreNamed() throws {
        // I32 has F32's size, so the file's layout is valid: refused when the tensor is asked for.
        let integer = loadError(try Self.withAttentionQueryType(26))
        #expect(integer.contains("tensor 'blk.0.attn_q.weight' has type I32, which Jindou does not compute with"), "\(integer)")
        // An id ggml does not define: the layout cannot be known, so the file is refused.
        let unknown = loadError(try Self.withAttentionQueryType(99))
        #expect(unknown.contains("tensor 'blk.0.attn_q.weight' has ggml type id 99, which is not a ggml type"), "\(unknown)")
    }

    @Test func truncatedOrForeignFilesAreRefused() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.llamaCppFile))
        let truncated = Scratch.directory + "jindou-gguf-cut-\(UUID().uuidString).gguf"
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: truncated))
        #expect(loadError(truncated).contains("past the end of the file"))
        let foreign = Scratch.directory + "jindou-gguf-json-\(UUID().uuidString).gguf"
        try Data(#"{"not": "gguf", "but": "json of some length"}"#.utf8).write(to: URL(fileURLWithPath: foreign))
        #expect(loadError(foreign).contains("not a GGUF file"))
    }

    @Test("re-encoding experts a GGUF stores quantised is refused, not a crash")
    func reencodingQuantisedExpertsIsRefused() throws {
        let (directory, file) = try Self.quantize("qwen3-moe-tiny")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: ExpertShardError.self) { try InferenceEngine.load(directory: file, expertFormat: .q4_K) }
        // The stored format is accepted as it is.
        let engine = try InferenceEngine.load(directory: file, expertFormat: .q8_0, denseFormat: .q8_0)
        #expect((engine.experts as? ExpertShard)?.experts.count == 3 * 8)
    }

    @Test("jindouctl generate --model FILE.gguf")
    func generateCommandReadsGGUF() async throws {
        let output = try Executable("jindouctl").run(["generate", "--model", Self.llamaCppFile, "--prompt-ids", "3,14,15,92,65",
                                                      "--max-new-tokens", "5", "--json", "--emit-logits"])
        #expect(output.status == 0, "\(output.stderr)")
        let object = try JSONSerialization.jsonObject(with: output.stdout) as! [String: Any]
        let engine = try InferenceEngine.load(directory: Self.llamaCppFile)
        let expected = try await engine.generate(GenerationRequest(promptTokenIDs: [3, 14, 15, 92, 65], maxNewTokens: 5,
                                                                   returnLastPromptLogits: true))
        #expect(object["token_ids"] as? [Int] == expected.tokenIDs)
        #expect((object["last_logits"] as? [NSNumber])?.map(\.floatValue) == expected.lastPromptLogits)

        // Text in: the tokenizer comes from the file's tokenizer.ggml metadata.
        let text = try Executable("jindouctl").run(["generate", "--model", Self.llamaCppFile, "--prompt", "Hello 世界",
                                                    "--max-new-tokens", "4", "--ignore-eos", "--json"])
        #expect(text.status == 0, "\(text.stderr)")
        let textObject = try JSONSerialization.jsonObject(with: text.stdout) as! [String: Any]
        let directoryRun = try Executable("jindouctl").run(["generate", "--model", Fixtures.path("qwen3-moe-tiny-sharded"),
                                                            "--prompt", "Hello 世界", "--max-new-tokens", "4", "--ignore-eos", "--json"])
        let directoryObject = try JSONSerialization.jsonObject(with: directoryRun.stdout) as! [String: Any]
        #expect(textObject["prompt_ids"] as? [Int] == directoryObject["prompt_ids"] as? [Int])
        #expect(textObject["text"] as? String == directoryObject["text"] as? String)

        let bad = try Executable("jindouctl").run(["generate", "--model", Fixtures.path("quants/q8_0.bin"), "--prompt-ids", "1"])
        #expect(bad.status != 0 && bad.stderr.contains("not a GGUF file"), "\(bad.stderr)")
    }
}
