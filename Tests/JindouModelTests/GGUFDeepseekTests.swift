import Foundation
import JindouModel
import JindouNumerics
import JindouTestSupport
import Testing

/// llama.cpp `deepseek2` files (DeepSeek-V3, Kimi-K2) load into the same engine a checkpoint
/// directory does. The files were written by llama.cpp's own converter from the DeepSeek
/// fixtures (tools/fixture_gguf.py, F32): `kimi-k2-tiny` converts exactly, so the
/// transformers goldens apply; `deepseek-v3-tiny` (YaRN with mscale ≠ mscale_all_dim) and
/// `deepseek-v3-tiny-noq` (`rope_interleave: false`) convert into files that mean a slightly
/// different model, which is compared with the checkpoint changed the same way.
@Suite("GGUF deepseek2 (DeepSeek-V3, Kimi-K2)")
struct GGUFDeepseekTests {
    static func file(_ fixture: String) -> String { Fixtures.path("gguf/\(fixture)-f32.gguf") }
    static let forms: [LatentAttentionMode] = [.absorbed, .expanded]

    /// An engine over `source` with `description` (default: the source's own) in one MLA form.
    static func engine(_ source: any WeightSource, description: ModelDescription? = nil, mode: LatentAttentionMode = .automatic,
                       expertFormat: BlockFormat? = nil, denseFormat: BlockFormat? = nil) throws -> InferenceEngine {
        let description = try description ?? source.modelDescription()
        var model = try DecoderModel(description: description, checkpoint: source, denseFormat: denseFormat)
        model.latentAttentionMode = mode
        var experts = try ExpertShard(description: description, checkpoint: source, keys: description.allExperts)
        if let expertFormat { experts = try experts.quantized(expertFormat) }
        return InferenceEngine(model: model, experts: experts)
    }

    /// What the converter's file says about `fixture`'s checkpoint, as a description: the
    /// checkpoint's own, with kv_b_proj split, no declared dtype, and what the file cannot
    /// carry replaced by what llama.cpp assumes (GGUFDeepseek2.swift).
    static func fileMeaning(_ fixture: String) throws -> ModelDescription {
        var d = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path(fixture)))
        d.latentAttention?.upProjections = .split
        d.declaredDType = nil
        d.ignoredPredictionLayers = 0  // the converter drops MTP layers
        d.attention.interleavedRotary = true  // llama.cpp's LLAMA_ROPE_TYPE_NORM
        if case .yarn(var yarn) = d.attention.ropeScaling {
            yarn.attentionFactor = 1  // mscale taken to be mscale_all_dim
            d.attention.ropeScaling = .yarn(yarn)
        }
        return d
    }

    /// Prefill logits at every position and the logits of every decode step of each golden
    /// case, from `engine` and from `reference` (an engine, or nil for transformers' goldens);
    /// returns the largest difference and checks the greedy tokens.
    static func compare(_ engine: InferenceEngine, fixture: String, with reference: InferenceEngine? = nil,
                        label: String) async throws -> Float {
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        var worst: Float = 0
        for c in golden.cases {
            let request = GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens, expertsPerToken: c.experts,
                                            stopTokenIDs: [])
            let prefill = try await engine.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            let steps = LogitsCollector()
            let tokens = try await engine.generate(request, onStepLogits: { steps.append($0) }).tokenIDs
            var expectedPrefill: [[Float]], expectedSteps: [[Float]], expectedTokens: [Int]
            if let reference {
                expectedPrefill = try await reference.promptLogits(c.promptIDs, expertsPerToken: c.experts)
                let referenceSteps = LogitsCollector()
                expectedTokens = try await reference.generate(request, onStepLogits: { referenceSteps.append($0) }).tokenIDs
                expectedSteps = referenceSteps.rows
            } else {
                expectedPrefill = try rows(tensors.tensor("case\(c.index).prefill_logits"))
                expectedSteps = try rows(tensors.tensor("case\(c.index).generated_logits"))
                expectedTokens = c.greedyNewTokens
            }
            #expect(prefill.count == expectedPrefill.count && steps.rows.count == expectedSteps.count, "\(label) case \(c.name)")
            for (a, e) in zip(prefill + steps.rows, expectedPrefill + expectedSteps) { worst = max(worst, maxAbsDifference(a, e)) }
            #expect(tokens == expectedTokens, "\(label) case \(c.name)")
        }
        return worst
    }

    @Test("the converter's Kimi-K2 file equals transformers' goldens, in both MLA forms", arguments: forms)
    func convertedFileEqualsTransformers(mode: LatentAttentionMode) async throws {
        let source = try GGUFCheckpoint(path: Self.file("kimi-k2-tiny"))
        #expect(source.description.latentAttention?.upProjections == .split)
        let worst = try await Self.compare(try Self.engine(source, mode: mode), fixture: "kimi-k2-tiny", label: "\(mode)")
        print("kimi-k2-tiny-f32.gguf, \(mode): max |Δlogit| vs transformers \(worst)")
        #expect(worst <= TransformersGoldenTests.fp32Tolerance, "\(mode): max |Δlogit| \(worst)")
    }

    /// DeepSeek-V3.2 (`deepseek32`) and GLM-5 (`glm-dsa`, with its per-layer indexer types and
    /// an MTP block counted in block_count): the sparse-attention indexer read from the file
    /// with llama.cpp's meaning (half-split / interleaved indexer rotary) is the checkpoint's.
    @Test("the converter's DeepSeek-V3.2 and GLM-5 files equal transformers' goldens, in both MLA forms",
          arguments: [("deepseek-v32-tiny", LatentAttentionMode.absorbed), ("deepseek-v32-tiny", .expanded),
                      ("glm-moe-dsa-tiny", .absorbed), ("glm-moe-dsa-tiny", .expanded)])
    func sparseAttentionFileEqualsTransformers(fixture: String, mode: LatentAttentionMode) async throws {
        let source = try GGUFCheckpoint(path: Self.file(fixture))
        var meaning = try Self.fileMeaning(fixture)
        meaning.ignoredPredictionLayers = source.description.ignoredPredictionLayers
        var described = source.description
        (described.eosTokenIDs, described.bosTokenID) = (meaning.eosTokenIDs, meaning.bosTokenID)
        #expect(described == meaning)
        #expect(described.latentAttention?.indexer != nil)
        let worst = try await Self.compare(try Self.engine(source, mode: mode), fixture: fixture, label: "\(mode)")
        print("\(fixture)-f32.gguf, \(mode): max |Δlogit| vs transformers \(worst)")
        #expect(worst <= TransformersGoldenTests.fp32Tolerance, "\(mode): max |Δlogit| \(worst)")
    }

    /// GLM-4.7-Flash (`glm4_moe_lite`), which llama.cpp's converter files as `deepseek2`: MLA
    /// with q-LoRA and interleaved rotary, a dense first layer, two expert groups, the shared
    /// expert, routed scaling 1.8, one MTP layer counted in block_count and never mapped.
    @Test("the converter's GLM-4.7-Flash file equals transformers' goldens, in both MLA forms", arguments: forms)
    func glm47FlashFileEqualsTransformers(mode: LatentAttentionMode) async throws {
        let source = try GGUFCheckpoint(path: Self.file("glm4-moe-lite-tiny-lead"))
        var meaning = try Self.fileMeaning("glm4-moe-lite-tiny-lead")
        meaning.architecture = .deepseekV3  // what the file says (llama.cpp's deepseek2)
        meaning.ignoredPredictionLayers = 1
        var described = source.description
        (described.eosTokenIDs, described.bosTokenID) = (meaning.eosTokenIDs, meaning.bosTokenID)
        #expect(described == meaning)
        let worst = try await Self.compare(try Self.engine(source, mode: mode), fixture: "glm4-moe-lite-tiny-lead", label: "\(mode)")
        print("glm4-moe-lite-tiny-lead-f32.gguf, \(mode): max |Δlogit| vs transformers \(worst)")
        #expect(worst <= TransformersGoldenTests.fp32Tolerance, "\(mode): max |Δlogit| \(worst)")
    }

    @Test("an older file with attn_kv_b (kv_b_proj unsplit) equals transformers' goldens", arguments: forms)
    func unsplitFileEqualsTransformers(mode: LatentAttentionMode) async throws {
        let path = try Self.unsplit(Self.file("kimi-k2-tiny"))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let source = try GGUFCheckpoint(path: path)
        #expect(source.description.latentAttention?.upProjections == .joint)
        let worst = try await Self.compare(try Self.engine(source, mode: mode), fixture: "kimi-k2-tiny", label: "attn_kv_b \(mode)")
        print("kimi-k2-tiny with attn_kv_b, \(mode): max |Δlogit| vs transformers \(worst)")
        #expect(worst <= TransformersGoldenTests.fp32Tolerance, "\(mode): max |Δlogit| \(worst)")
    }

    /// deepseek-v3-tiny: q-LoRA, YaRN, 16 experts in 4 groups, correction bias; noq: plain
    /// q_proj, 3 layers whose MTP layer the converter dropped, norm_topk_prob false.
    @Test("the converter's DeepSeek-V3 files equal their checkpoints as llama.cpp reads the files",
          arguments: ["deepseek-v3-tiny", "deepseek-v3-tiny-noq"], forms)
    func convertedFileEqualsItsMeaning(fixture: String, mode: LatentAttentionMode) async throws {
        let source = try GGUFCheckpoint(path: Self.file(fixture))
        let meaning = try Self.fileMeaning(fixture)
        Self.expectSameModel(source.description, meaning)
        var stored = meaning
        stored.latentAttention?.upProjections = .joint  // the checkpoint's own kv_b_proj
        let checkpoint = try Self.engine(try Checkpoint(directory: Fixtures.path(fixture)), description: stored, mode: mode)
        let worst = try await Self.compare(try Self.engine(source, mode: mode), fixture: fixture, with: checkpoint,
                                           label: "\(fixture) \(mode)")
        print("\(fixture)-f32.gguf, \(mode): max |Δlogit| vs the checkpoint as the file means it \(worst)")
        #expect(worst <= 1e-5, "\(fixture) \(mode): max |Δlogit| \(worst)")
    }

    /// `actual` equals `expected`, except that mscale_all_dim went through the file as a float
    /// (0.1 × it, in f32) and so did the softmax scale derived from it.
    static func expectSameModel(_ actual: ModelDescription, _ expected: ModelDescription, sourceLocation: SourceLocation = #_sourceLocation) {
        var actual = actual
        if case .yarn(var a) = actual.attention.ropeScaling, case .yarn(let e) = expected.attention.ropeScaling,
           let x = a.mscaleAllDim, let y = e.mscaleAllDim, abs(x - y) <= 1e-6 * y,
           let s = actual.latentAttention?.softmaxScale, let t = expected.latentAttention?.softmaxScale, abs(s - t) <= 1e-6 * t {
            a.mscaleAllDim = y
            actual.attention.ropeScaling = .yarn(a)
            actual.latentAttention?.softmaxScale = t
        }
        #expect(actual == expected, sourceLocation: sourceLocation)
    }

    @Test("the Kimi-K2 file's metadata describes the checkpoint")
    func metadataDescribesTheCheckpoint() throws {
        #expect(try GGUFCheckpoint(path: Self.file("kimi-k2-tiny")).description == Self.fileMeaning("kimi-k2-tiny"))
        // YaRN: factor, original context, betas and mscale_all_dim (0.1 × yarn_log_multiplier) survive.
        let yarn = try GGUFCheckpoint(path: Self.file("deepseek-v3-tiny")).description
        guard case .yarn(let y) = yarn.attention.ropeScaling else { Issue.record("no YaRN"); return }
        #expect(y.factor == 4 && y.originalMaxPositions == 64 && y.betaFast == 32 && y.betaSlow == 1)
        #expect(abs(y.mscaleAllDim! - 0.707) < 1e-6)
        #expect(yarn.router.groupCount == 4 && yarn.router.groupsPerToken == 2 && yarn.hasCorrectionBias)
    }

    @Test("layers counted by nextn_predict_layers (MTP) are never requested")
    func predictionLayersAreNeverMapped() async throws {
        // As a file that kept the MTP block would say it: one more block, named as such. Its
        // tensors are absent here, so loading proves none is asked for.
        let path = try GGUFLoadingTests.rewritten(from: Self.file("kimi-k2-tiny"), metadata: { metadata in
            GGUFLoadingTests.set("deepseek2.block_count", .u32(3))(&metadata)
            GGUFLoadingTests.set("deepseek2.nextn_predict_layers", .u32(1))(&metadata)
        })
        defer { try? FileManager.default.removeItem(atPath: path) }
        let source = try GGUFCheckpoint(path: path)
        #expect(source.description.layerCount == 2 && source.description.ignoredPredictionLayers == 1)
        let prompt = [23, 88, 175, 59, 216]
        let logits = try await Self.engine(source).promptLogits(prompt)
        #expect(logits == (try await Self.engine(try GGUFCheckpoint(path: Self.file("kimi-k2-tiny"))).promptLogits(prompt)))
    }

    // MARK: - Damaged files

    /// `file` with kv_b_proj unsplit, as files converted before llama.cpp split it: attn_kv_b
    /// rebuilt from attn_k_b / attn_v_b (exact for F32), key/value lengths per head, no *_mla keys.
    static func unsplit(_ path: String) throws -> String {
        let file = try GGUFFile(path: path)
        let heads = file.metadata["deepseek2.attention.head_count"]!.integer!
        let rank = file.metadata["deepseek2.attention.kv_lora_rank"]!.integer!
        let qk = file.metadata["deepseek2.attention.key_length_mla"]!.integer!
        let v = file.metadata["deepseek2.attention.value_length_mla"]!.integer!
        let rope = file.metadata["deepseek2.rope.dimension_count"]!.integer!
        let nope = qk - rope
        return try GGUFLoadingTests.rewritten(from: path, metadata: { metadata in
            metadata.removeAll { $0.0.hasSuffix("_mla") }
            GGUFLoadingTests.set("deepseek2.attention.key_length", .u32(UInt32(qk)))(&metadata)
            GGUFLoadingTests.set("deepseek2.attention.value_length", .u32(UInt32(v)))(&metadata)
            GGUFLoadingTests.set("deepseek2.attention.head_count_kv", .u32(UInt32(heads)))(&metadata)
        }, tensors: { !$0.name.hasSuffix("attn_v_b.weight") }, replace: { info in
            guard info.name.hasSuffix("attn_k_b.weight") else { return nil }
            let layer = String(info.name.dropLast("attn_k_b.weight".count))
            func floats(_ name: String) throws -> [Float] { Array(try file.bytes(of: file.tensor(name)!).bindMemory(to: Float.self)) }
            var joint = [Float](repeating: 0, count: heads * (nope + v) * rank)
            let (k, vv) = (try! floats(info.name), try! floats(layer + "attn_v_b.weight"))  // the committed fixture file reads
            for h in 0..<heads {
                for j in 0..<nope { for r in 0..<rank { joint[(h * (nope + v) + j) * rank + r] = k[(h * rank + r) * nope + j] } }
                for j in 0..<v { for r in 0..<rank { joint[(h * (nope + v) + nope + j) * rank + r] = vv[(h * v + j) * rank + r] } }
            }
            return GGUFWriter.Tensor(name: layer + "attn_kv_b.weight", dimensions: [rank, heads * (nope + v)], type: .f32) { write in
                try joint.withUnsafeBytes { try write($0) }
            }
        })
    }

    func loadError(_ path: String) -> String { GGUFLoadingTests().loadError(path) }

    func damaged(_ edit: @escaping (inout [(String, GGUFWriter.Value)]) -> Void = { _ in },
                 tensors keep: @escaping (GGUFTensorInfo) -> Bool = { _ in true }) throws -> String {
        try GGUFLoadingTests.rewritten(from: Self.file("deepseek-v3-tiny"), metadata: edit, tensors: keep)
    }

    @Test("softmax or unstated gating is refused, naming the key")
    func softmaxGatingIsRefused() throws {
        let softmax = loadError(try damaged(GGUFLoadingTests.set("deepseek2.expert_gating_func", .u32(1))))
        #expect(softmax.contains("metadata 'deepseek2.expert_gating_func' is 1 (softmax), but Jindou serves DeepSeek-V3's sigmoid routing only"),
                "\(softmax)")
        let missing = loadError(try damaged { $0.removeAll { $0.0 == "deepseek2.expert_gating_func" } })
        #expect(missing.contains("metadata 'deepseek2.expert_gating_func' is missing; llama.cpp then scores experts with softmax"), "\(missing)")
    }

    @Test("missing or unusable MLA metadata is named")
    func badLatentMetadataIsNamed() throws {
        let rank = loadError(try damaged { $0.removeAll { $0.0 == "deepseek2.attention.kv_lora_rank" } })
        #expect(rank.contains("metadata 'deepseek2.attention.kv_lora_rank' is missing"), "\(rank)")
        let rope = loadError(try damaged(GGUFLoadingTests.set("deepseek2.rope.dimension_count", .u32(24))))
        #expect(rope.contains("metadata 'deepseek2.rope.dimension_count' is 24"), "\(rope)")
        let scaling = loadError(try damaged(GGUFLoadingTests.set("deepseek2.rope.scaling.type", .string("longrope"))))
        #expect(scaling.contains("'deepseek2.rope.scaling.type' 'longrope' is not supported for deepseek2"), "\(scaling)")
        // A q_lora_rank that disagrees with attn_q_b's shape.
        let query = loadError(try damaged(GGUFLoadingTests.set("deepseek2.attention.q_lora_rank", .u32(32))))
        #expect(query.contains("tensor 'blk.0.attn_q_a.weight' has shape [48, 64]"), "\(query)")
    }

    @Test("a missing MLA tensor is named with the name Jindou asked for")
    func missingTensorIsNamed() throws {
        let keys = loadError(try damaged(tensors: { $0.name != "blk.2.attn_k_b.weight" }))
        #expect(keys.contains("missing tensor 'blk.2.attn_k_b.weight' (model.layers.2.self_attn.k_b_proj.weight)"), "\(keys)")
        let neither = loadError(try damaged(tensors: { !$0.name.hasPrefix("blk.0.attn_k_b") }))
        #expect(neither.contains("missing tensor 'blk.0.attn_k_b.weight' (or the older 'blk.0.attn_kv_b.weight')"), "\(neither)")
    }

    // MARK: - jindouctl quantize

    /// A checkpoint directory for `fixture` with the tokenizer the converter was given.
    static func withTokenizer(_ fixture: String, _ family: String, in directory: String) throws -> String {
        let staged = directory + "/\(fixture)"
        try FileManager.default.createDirectory(atPath: staged, withIntermediateDirectories: true)
        for source in [Fixtures.path(fixture), Fixtures.path("gguf/tokenizers/\(family)")] {
            for name in try FileManager.default.contentsOfDirectory(atPath: source) where !name.hasPrefix("golden") {
                try FileManager.default.createSymbolicLink(atPath: staged + "/\(name)", withDestinationPath: source + "/\(name)")
            }
        }
        return staged
    }

    @Test("jindouctl quantize q8_0 of Kimi-K2 writes llama.cpp's deepseek2 file, equal to the checkpoint re-encoded in process")
    func quantizedFileEqualsReencodedCheckpoint() async throws {
        let directory = Scratch.directory + "jindou-gguf-deepseek-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let model = try Self.withTokenizer("kimi-k2-tiny", "kimi", in: directory)
        let out = directory + "/kimi.gguf"
        let run = try Executable("jindouctl").run(["quantize", "--experts", "q8_0", "--model", model, "--out", out,
                                                   "--token-embedding-type", "f32"])
        #expect(run.status == 0, "\(run.stderr)")

        // The converter's keys and tensor names (values may differ in type: u32 vs i32, f32 vs f64).
        let ours = try GGUFFile(path: out), theirs = try GGUFFile(path: Self.file("kimi-k2-tiny"))
        #expect(Set(ours.metadataKeys).subtracting(["general.file_type", "general.quantization_version", "general.name"])
            .isSuperset(of: Set(theirs.metadataKeys).subtracting(["general.type", "general.size_label", "general.name",
                                                                  "general.file_type", "general.quantization_version"])))
        for key in theirs.metadataKeys where key.hasPrefix("deepseek2.") || key.hasPrefix("tokenizer.") {
            let (a, b) = (ours.metadata[key], theirs.metadata[key])
            let close = (a?.double).flatMap { x in b?.double.map { abs(x - $0) <= 1e-6 * abs($0) } } ?? false
            #expect(a == b || close, "\(key): \(String(describing: a)) vs \(String(describing: b))")
        }
        #expect(Set(ours.tensors.map(\.name)) == Set(theirs.tensors.map(\.name)))
        for info in theirs.tensors { #expect(ours.tensor(info.name)?.dimensions == info.dimensions, "\(info.name)") }
        #expect(ours.tensor("blk.1.ffn_up_exps.weight")?.type == .q8_0 && ours.tensor("blk.0.attn_q_a.weight")?.type == .q8_0)
        // q_b (48 wide) and attn_k_b (16 wide) are not whole Q8_0 blocks: F32.
        #expect(ours.tensor("blk.0.attn_q_b.weight")?.type == .f32 && ours.tensor("blk.0.attn_k_b.weight")?.type == .f32)

        // Every weight equals the in-process re-encoding; logits differ only by MLA's summation
        // order (W_UK applied per stored row of attn_k_b instead of kv_b_proj's).
        let gguf = try Self.engine(try GGUFCheckpoint(path: out))
        let reference = try Self.engine(try Checkpoint(directory: Fixtures.path("kimi-k2-tiny")), expertFormat: .q8_0, denseFormat: .q8_0)
        #expect(gguf.description == (try Self.fileMeaning("kimi-k2-tiny")))
        for (a, b) in zip(gguf.model.layers, reference.model.layers) {
            guard case .latent(let x) = a.attention, case .latent(let y) = b.attention else { Issue.record("not MLA"); return }
            for (m, n) in [(x.queryA!, y.queryA!), (x.queryB!, y.queryB!), (x.keyValueA, y.keyValueA), (x.output, y.output)] {
                #expect(m.blockFormat == n.blockFormat && m.floatValues() == n.floatValues())
            }
            for h in 0..<x.keyUp.count {
                #expect(x.keyUp[h].floatValues() == y.keyUp[h].transposedCopy(columns: 0..<y.keyUp[h].columns).floatValues())
                #expect(x.valueUp[h].floatValues() == y.valueUp[h].floatValues())
            }
        }
        let shards = (try #require(gguf.experts as? ExpertShard), try #require(reference.experts as? ExpertShard))
        for (key, weights) in shards.0.experts {
            let other = try #require(shards.1.experts[key])
            #expect(weights.gate.floatValues() == other.gate.floatValues() && weights.down.floatValues() == other.down.floatValues())
        }
        let worst = try await Self.compare(gguf, fixture: "kimi-k2-tiny", with: reference, label: "quantized")
        print("jindouctl quantize q8_0 of kimi-k2-tiny: max |Δlogit| vs the checkpoint re-encoded in process \(worst)")
        #expect(worst <= 1e-5, "max |Δlogit| \(worst)")
    }

    @Test("jindouctl quantize refuses what a deepseek2 file cannot say, naming it")
    func quantizeRefusesWhatTheFileCannotSay() throws {
        let ctl = try Executable("jindouctl")
        for (fixture, reason) in [("deepseek-v3-tiny", "YaRN with mscale ≠ mscale_all_dim"), ("deepseek-v3-tiny-noq", "rope_interleave: false"),
                                  ("deepseek-v3-tiny-fp8", "block-FP8")] {
            let out = Scratch.directory + "jindou-refused-\(UUID().uuidString).gguf"
            let run = try ctl.run(["quantize", "--experts", "q8_0", "--model", Fixtures.path(fixture), "--out", out])
            #expect(run.status != 0 && run.stderr.contains(reason), "\(fixture): \(run.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: out + ".partial"))
        }
    }
}
