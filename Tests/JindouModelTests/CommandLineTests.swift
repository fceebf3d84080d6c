import Foundation
import Testing
import JindouModel
import JindouNumerics
import JindouRouting
import JindouTestSupport

/// The command contract of shared/DESIGN.md for `jindouctl generate --model`, checked
/// end to end against transformers' goldens.
@Suite("jindouctl generate")
struct CommandLineTests {
    @Test(arguments: ["qwen3-moe-tiny", "glm4-moe-tiny-legacy"])
    func jsonOutputMatchesTransformers(fixture: String) throws {
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        let ctl = try Executable("jindouctl")
        for c in golden.cases where c.name == "default-medium" || c.name.hasPrefix("auto") || c.name == "k1" {
            var arguments = ["generate", "--model", Fixtures.path(fixture),
                             "--prompt-ids", c.promptIDs.map(String.init).joined(separator: ","),
                             "--max-new-tokens", String(c.maxNewTokens), "--temperature", "0", "--json", "--emit-logits"]
            switch c.expertsPerToken {
            case .fixed(let k) where c.name != "default-medium": arguments += ["--experts-per-token", String(k)]
            case .auto: arguments += ["--experts-per-token", "auto:\(c.autoThreshold!)"]
            default: break
            }
            let output = try ctl.run(arguments)
            #expect(output.status == 0, "\(output.stderr)")
            let object = try JSONSerialization.jsonObject(with: output.stdout) as! [String: Any]
            #expect(object["token_ids"] as? [Int] == c.greedyNewTokens, "case \(c.name)")
            let logits = (object["last_logits"] as! [NSNumber]).map(\.floatValue)
            let expected = try rows(tensors.tensor("case\(c.index).prefill_logits")).last!
            #expect(maxAbsDifference(logits, expected) <= 1e-4, "case \(c.name)")
            switch c.expertsPerToken {
            case .auto: #expect(object["experts_per_token"] as? String == ExpertsPerToken.auto(threshold: c.autoThreshold!).description)
            case .fixed(let k): #expect(object["experts_per_token"] as? Int == k)
            case .configured: break
            }
        }
    }

    /// JINDOU_KERNELS picks the kernel set at startup: every set this CPU runs meets the
    /// goldens; one it cannot run, or an unknown name, is refused with a warning and the
    /// best supported set used instead.
    @Test func kernelSetChosenByEnvironment() throws {
        let fixture = "qwen3-moe-tiny"
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        let c = try #require(golden.cases.first { $0.name == "default-medium" })
        let expected = try rows(tensors.tensor("case\(c.index).prefill_logits")).last!
        let ctl = try Executable("jindouctl")
        let supported = Set(KernelDispatch.supported.map { $0.name })
        for name in KernelDispatch.all.map({ $0.name }) + ["sse9"] {
            let output = try ctl.run(["generate", "--model", Fixtures.path(fixture),
                                      "--prompt-ids", c.promptIDs.map(String.init).joined(separator: ","),
                                      "--max-new-tokens", String(c.maxNewTokens), "--temperature", "0", "--json", "--emit-logits"],
                                     environment: ["JINDOU_KERNELS": name])
            #expect(output.status == 0, "\(name): \(output.stderr)")
            if supported.contains(name) {
                #expect(!output.stderr.contains("warning"), "\(name): \(output.stderr)")
            } else if name == "sse9" {
                #expect(output.stderr.contains("JINDOU_KERNELS=sse9 is not a kernel set"), "\(output.stderr)")
            } else {
                #expect(output.stderr.contains("lacks the instructions"), "\(name): \(output.stderr)")
            }
            let object = try JSONSerialization.jsonObject(with: output.stdout) as! [String: Any]
            #expect(object["token_ids"] as? [Int] == c.greedyNewTokens, "\(name)")
            let logits = (object["last_logits"] as! [NSNumber]).map(\.floatValue)
            #expect(maxAbsDifference(logits, expected) <= 1e-4, "\(name)")
        }
    }

    @Test func errorsAreOneLineOnStderrWithNonZeroExit() throws {
        let ctl = try Executable("jindouctl")
        let cases: [([String], String)] = [
            (["generate", "--model", "/nonexistent", "--prompt-ids", "1,2"], "missing file: /nonexistent"),
            (["generate", "--model", Fixtures.path("qwen3-moe-tiny"), "--prompt-ids", "1,x"], "--prompt-ids"),
            (["generate", "--model", Fixtures.path("qwen3-moe-tiny"), "--prompt-ids", "1,99999"], "out of range"),
            (["generate", "--model", Fixtures.path("qwen3-moe-tiny"), "--prompt-ids", "1", "--experts-per-token", "999"],
             "experts_per_token"),
        ]
        for (arguments, message) in cases {
            let output = try ctl.run(arguments)
            #expect(output.status != 0, "\(arguments)")
            #expect(output.stderr.contains(message), "\(arguments): \(output.stderr)")
            #expect(output.stdout.isEmpty)
        }
    }

    @Test func humanOutputPrintsTokenIds() throws {
        let ctl = try Executable("jindouctl")
        let output = try ctl.run(["generate", "--model", Fixtures.path("qwen3-moe-tiny-sharded"), "--prompt-ids", "5,6,7",
                                  "--max-new-tokens", "4"])
        #expect(output.status == 0)
        let tokens = String(decoding: output.stdout, as: UTF8.self).split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(tokens.count == 4)
        #expect(output.stderr.contains("tok/s"))
    }
}
