import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting
import JindouNumerics

/// gpt-oss's config.json in the Hub style (rope_scaling, experts_per_token) and the
/// transformers 5 style describe the same model; what the modeling file does not compute is
/// refused by name; MXFP4 experts stay MXFP4 and decode to exactly what transformers'
/// `convert_moe_packed_tensors` gives. Numerical equality with transformers: the
/// gpt-oss-tiny and gpt-oss-tiny-mxfp4 goldens (TransformersGoldenTests, RouterGoldenTests),
/// through workers in ClusterEqualsEngineTests, NetnsClusterTests and LocalClusterTests.
@Suite("gpt-oss configuration and MXFP4 experts")
struct GptOssTests {
    func config(_ fixture: String = "gpt-oss-tiny") throws -> [String: Any] { try ConfigEditing.config(fixture) }

    func describe(_ config: [String: Any]) throws -> ModelDescription { try ConfigEditing.describe(config) }

    @Test func theHubConfigDescribesSinksAlternatingWindowsYarnAndBiasedExperts() throws {
        let hub = try config()
        #expect(hub["rope_scaling"] != nil && hub["rope_parameters"] == nil, "fixture should be in the Hub style")
        let d = try describe(hub)
        #expect(d.architecture == .gptOss && d.sparseLayers == [0, 1, 2, 3])
        #expect(d.attention.sinks && d.attention.queryKeyValueBias && d.attention.outputBias && !d.attention.queryKeyNorm)
        #expect(d.attention.layerWindows == [5, nil, 5, nil])
        guard case .yarn(let yarn) = d.attention.ropeScaling else { Issue.record("no YaRN"); return }
        #expect(yarn.factor == 4 && yarn.originalMaxPositions == 16 && !yarn.truncate)
        #expect(d.router.scoring == .softmaxTopK && d.router.normalizeTopK && !d.hasCorrectionBias)
        #expect(d.routerName(layer: 1) == "model.layers.1.mlp.router.weight" && d.moeNames.routerBias == "router.bias")
        #expect(d.expertStorage == .interleavedWithBias(mxfp4: false))
        #expect(d.expertActivation == .clampedSwiglu(alpha: 1.702, limit: 1))
        #expect(try describe(try config("gpt-oss-tiny-mxfp4")).expertStorage == .interleavedWithBias(mxfp4: true))
    }

    @Test func theTransformers5StyleAndTheDefaultsDescribeTheSameModel() throws {
        let hub = try config()
        var current = hub
        let scaling = current.removeValue(forKey: "rope_scaling") as! [String: Any]
        var parameters = scaling
        parameters["rope_type"] = parameters.removeValue(forKey: "type")
        parameters["rope_theta"] = current.removeValue(forKey: "rope_theta")
        current["rope_parameters"] = parameters
        current.removeValue(forKey: "experts_per_token")
        #expect(try describe(current) == describe(hub))
        // GptOssConfig.__post_init__: no rope keys → YaRN ×32 over 4096 positions, theta 150000;
        // no layer_types → odd layers (1-based) slide.
        current.removeValue(forKey: "rope_parameters")
        current.removeValue(forKey: "layer_types")
        let defaults = try describe(current)
        #expect(defaults.attention.ropeTheta == 150_000 && defaults.attention.layerWindows == [5, nil, 5, nil])
        guard case .yarn(let yarn) = defaults.attention.ropeScaling else { Issue.record("no YaRN"); return }
        #expect(yarn.factor == 32 && yarn.originalMaxPositions == 4096 && !yarn.truncate && yarn.betaFast == 32 && yarn.betaSlow == 1)
    }

    /// (field, JSON value)
    @Test(arguments: [("layer_types", "[\"full_attention\", \"chunked_attention\", \"full_attention\", \"full_attention\"]"),
                      ("quantization_config", "{\"quant_method\": \"bitsandbytes\"}"), ("sliding_window", "0"),
                      ("rope_scaling", "{\"type\": \"longrope\", \"factor\": 2.0}")])
    func whatItCannotMeanIsRefusedByName(field: String, value: String) throws {
        var c = try config()
        c[field] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        let expected = field == "quantization_config" ? "quantization_config.quant_method"
            : field == "rope_scaling" ? "rope_parameters.rope_type" : field
        #expect(ConfigEditing.refusedField(c) == expected)
    }

    /// MXFP4 experts loaded from `_blocks`/`_scales` are kept as MXFP4 (17 bytes per 32
    /// weights, multiplied with fp32 activations); that they decode to transformers'
    /// dequantised weights is what the gpt-oss-tiny-mxfp4 goldens show.
    @Test func mxfp4ExpertsStayMXFP4() throws {
        let directory = Fixtures.path("gpt-oss-tiny-mxfp4")
        let checkpoint = try Checkpoint(directory: directory)
        let d = try ModelDescription(checkpoint: checkpoint)
        let key = ExpertKey(layer: 1, expert: 5)
        let shard = try ExpertShard(description: d, checkpoint: checkpoint, keys: [key])
        let expert = try #require(shard.experts[key])
        for m in [expert.gate, expert.up, expert.down] {
            #expect(m.blockFormat == .mxfp4 && m.floatActivations)
        }
        #expect(expert.gate.rows == d.moeIntermediateSize && expert.gate.columns == d.hiddenSize)
        #expect(expert.down.rows == d.hiddenSize && expert.down.columns == d.moeIntermediateSize)
        #expect(expert.gateBias?.count == d.moeIntermediateSize && expert.downBias?.count == d.hiddenSize)
        #expect(shard.byteCount < (3 * d.hiddenSize * d.moeIntermediateSize) * 17 / 32 + 4 * (2 * d.moeIntermediateSize + d.hiddenSize) + 1)
    }
}
