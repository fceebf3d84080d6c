import Foundation
import JindouAdmin
import JindouModel
import JindouTestSupport
import Testing

/// `jindoud local` + `jindouctl generate --coordinator` against `jindouctl generate --model`,
/// as a user runs them: real processes, the command contract, SIGTERM shutdown.
@Suite("jindoud local", .serialized)
struct LocalClusterTests {
    /// A checkpoint directory or a GGUF file (workers then load their experts' slices of it).
    @Test(arguments: [("glm4-moe-tiny-legacy", 2), ("qwen3-moe-tiny-sharded", 3), ("gguf/qwen3-moe-tiny-sharded-f32.gguf", 2),
                      ("minimax-m2-tiny", 2), ("dots1-tiny", 2), ("hunyuan-moe-tiny", 2),
                      ("glm4-moe-lite-tiny", 2), ("ernie45-moe-tiny", 2),
                      ("exaone-moe-tiny", 2), ("gpt-oss-tiny", 2), ("gpt-oss-tiny-mxfp4", 2),
                      ("afmoe-tiny", 2), ("gguf/gpt-oss-tiny-mxfp4.gguf", 2),
                      ("gguf/minimax-m2-tiny-f32.gguf", 2), ("gguf/exaone-moe-tiny-f32.gguf", 2),
                      ("gguf/afmoe-tiny-every4-f32.gguf", 2), ("gguf/ernie45-moe-tiny-ff64-f32.gguf", 2),
                      ("gguf/qwen3-next-tiny-moe-f32.gguf", 2), ("gguf/kimi-linear-tiny-f32.gguf", 2),
                      ("gguf/ling-hybrid-tiny-group4-f32.gguf", 2),
                      ("deepseek-v32-tiny", 2), ("glm-moe-dsa-tiny", 2), ("longcat-flash-tiny", 2)])
    func localClusterAnswersLikeTheInProcessEngine(fixture: String, workers: Int) throws {
        let ctl = try Executable("jindouctl")
        let (process, url) = try startLocal(fixture: fixture, workers: workers)
        let children = childPIDs(of: process.processIdentifier)
        #expect(children.count == workers)
        // Workers on this host are reached over shared memory by default.
        let status = try ctl.run(["status", "--coordinator", url, "--json"])
        let links = try JSONDecoder().decode(ClusterStatus.self, from: status.stdout).workers.map(\.transport)
        #expect(links == Array(repeating: "shm", count: workers), "\(links)")

        for (prompt, experts) in [("11,12,13,14", nil), ("1,2,3", "1"), ("7,8,9,10,11", "auto:0.6")] as [(String, String?)] {
            var common = ["generate", "--prompt-ids", prompt, "--max-new-tokens", "6", "--json", "--emit-logits", "--ignore-eos"]
            if let experts { common += ["--experts-per-token", experts] }
            let viaCluster = try ctl.run(common + ["--coordinator", url])
            let inProcess = try ctl.run(common + ["--model", Fixtures.path(fixture)])
            #expect(viaCluster.status == 0, "\(viaCluster.stderr)")
            let a = try JSONDecoder().decode(GenerationReport.self, from: viaCluster.stdout)
            let b = try JSONDecoder().decode(GenerationReport.self, from: inProcess.stdout)
            #expect(a.tokenIDs == b.tokenIDs && a.expertsPerToken == b.expertsPerToken && a.finishReason == b.finishReason)
            #expect(maxAbsDifference(a.lastLogits!, b.lastLogits!) <= 1e-5)
        }
        // Bad requests get a one-line error and the cluster keeps serving.
        let bad = try ctl.run(["generate", "--coordinator", url, "--prompt-ids", "1,999999"])
        #expect(bad.status != 0 && bad.stderr.contains("out of range"))
        #expect(try ctl.run(["generate", "--coordinator", url, "--prompt-ids", "1"]).status == 0)

        // SIGTERM: a clean exit, and the workers are gone.
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        for pid in children { #expect(kill(pid, 0) != 0, "worker \(pid) outlived jindoud local") }
    }

    /// `jindoud local --transport tcp` keeps TCP loopback links, with the same answers.
    @Test func localClusterOverTCPWhenAsked() throws {
        let ctl = try Executable("jindouctl")
        let (process, url) = try startLocal(fixture: "qwen3-moe-tiny", workers: 2, extraArguments: ["--transport", "tcp"])
        defer { process.terminate(); process.waitUntilExit() }
        let status = try ctl.run(["status", "--coordinator", url, "--json"])
        #expect(try JSONDecoder().decode(ClusterStatus.self, from: status.stdout).workers.map(\.transport) == ["tcp", "tcp"])
        let common = ["generate", "--prompt-ids", "11,12,13,14", "--max-new-tokens", "6", "--json", "--emit-logits", "--ignore-eos"]
        let a = try JSONDecoder().decode(GenerationReport.self, from: try ctl.run(common + ["--coordinator", url]).stdout)
        let b = try JSONDecoder().decode(GenerationReport.self, from: try ctl.run(common + ["--model", Fixtures.path("qwen3-moe-tiny")]).stdout)
        #expect(a.tokenIDs == b.tokenIDs)
        #expect(maxAbsDifference(a.lastLogits!, b.lastLogits!) <= 1e-5)
    }

    /// Starts `jindoud local` and waits for its `ready http://…` line.
    func startLocal(fixture: String, workers: Int, extraArguments: [String] = []) throws -> (Process, String) {
        let process = Process()
        process.executableURL = try Executable("jindoud").url
        process.arguments = ["local", "--model", Fixtures.path(fixture), "--workers", String(workers),
                             "--listen", "127.0.0.1:0", "--log-level", "error"] + extraArguments
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        guard let line = readLine(stdout.fileHandleForReading), line.hasPrefix("ready http://") else {
            process.terminate()
            throw HarnessError("jindoud local did not print a ready line")
        }
        return (process, String(line.dropFirst("ready ".count)))
    }

    /// Child processes of `parent`, over all its threads (any thread may have spawned them).
    func childPIDs(of parent: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(parent)/task")) ?? []
        return tasks.flatMap { task -> [Int32] in
            guard let handle = FileHandle(forReadingAtPath: "/proc/\(parent)/task/\(task)/children"),
                  let data = try? handle.readToEnd() else { return [] }
            return String(decoding: data, as: UTF8.self).split(separator: " ").compactMap { Int32($0) }
        }
    }
}
