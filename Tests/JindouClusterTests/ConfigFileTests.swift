import Foundation
import JindouAdmin
import JindouModel
import JindouTestSupport
import Testing

/// `--config FILE`, `JINDOU_<FLAG>` variables and `--print-config`, with real `jindoud`
/// processes: a cluster started from files alone serves the engine's answers, the
/// precedence is command line > environment > file > default, and bad files are refused
/// naming the file and the key.
@Suite("Config files and environment overrides", .serialized)
struct ConfigFileTests {
    let fixture = "qwen3-moe-tiny"

    /// A directory for this test's files.
    func directory() throws -> URL {
        let url = Scratch.url.appendingPathComponent("jindou-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func write(_ text: String, _ name: String, in directory: URL) throws -> String {
        let url = directory.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// Runs `jindoud ARGUMENTS` to completion: (exit status, stdout, stderr).
    func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String, String) {
        let process = Process()
        process.executableURL = try Executable("jindoud").url
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    /// The `key: value  # source` lines of a printed configuration, by key.
    func settings(_ yaml: String) -> [String: (value: String, source: String)] {
        var result: [String: (String, String)] = [:]
        for line in yaml.split(separator: "\n") where !line.hasPrefix("#") && !line.hasPrefix(" ") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon])
            let rest = line[line.index(after: colon)...]
            let parts = rest.components(separatedBy: "  # ")
            result[key] = (parts[0].trimmingCharacters(in: .whitespaces), parts.count > 1 ? parts[1] : "")
        }
        return result
    }

    @Test func aClusterStartedFromConfigFilesServesTheEnginesAnswers() async throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let coordinatorFile = try write("""
            # A coordinator with no flags on its command line.
            model: \(Fixtures.path(fixture))
            listen: 127.0.0.1:0
            heartbeat: 0.1
            unreachable_after: 2      # `_` may stand for `-`
            served-model-name: from-the-file
            log-level: error
            """, "coordinator.yaml", in: dir)
        let coordinator = try DaemonProcess(["coordinator", "--config", coordinatorFile],
                                            environment: ["JINDOU_SERVED_MODEL_NAME": "from-the-environment"])
        defer { coordinator.stop() }
        let workerFile = try write("""
            model: \(Fixtures.path(fixture))
            listen: 127.0.0.1:0
            join: \(coordinator.url)
            no-prefault: true
            """, "worker.yaml", in: dir)
        // JINDOU_CONFIG names the file; the name comes from the command line.
        let workers = try ["w0", "w1"].map {
            try DaemonProcess(["worker", "--name", $0], environment: ["JINDOU_CONFIG": workerFile, "JINDOU_LOG_LEVEL": "error"])
        }
        defer { workers.forEach { $0.stop() } }

        let client = try AdminClient(coordinator.url, timeoutSeconds: 90)
        let expected = try await RequestStream.expectations(fixture: fixture)[0]
        let report = try await client.post("v1/jindou/generate", expected.body, as: GenerationReport.self)
        #expect(report.tokenIDs == expected.tokens)
        let models = try JSONSerialization.jsonObject(with: try await client.send("GET", "v1/models", body: nil)) as? [String: Any]
        let names = (models?["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
        #expect(names == ["from-the-environment"], "the environment overrides the file")
        let status = try JSONSerialization.jsonObject(with: try await client.send("GET", "v1/admin/status", body: nil)) as? [String: Any]
        let joined = ((status?["workers"] as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String }.sorted()
        #expect(joined == ["w0", "w1"], "\(status ?? [:])")
    }

    @Test func precedenceIsCommandLineThenEnvironmentThenFileThenDefault() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = try write("""
            model: /models/from-file
            name: from-file
            experts: contiguous:0/2
            log-level: debug
            max-payload-mb: 64
            no_prefault: true
            """, "worker.yaml", in: dir)
        let (status, out, err) = try run(["worker", "--config", file, "--print-config", "--name", "from-cli"],
                                         environment: ["JINDOU_NAME": "from-env", "JINDOU_LOG_LEVEL": "warning", "JINDOU_THREADS": "3"])
        #expect(status == 0, "\(err)")
        let s = settings(out)
        #expect(s["name"]?.value == "from-cli" && s["name"]?.source == "from command line")
        #expect(s["log-level"]?.value == "warning" && s["log-level"]?.source == "from JINDOU_LOG_LEVEL")
        #expect(s["threads"]?.value == "3")
        #expect(s["model"]?.value == "/models/from-file" && s["model"]?.source == "from \(file)")
        #expect(s["max-payload-mb"]?.value == "64" && s["no-prefault"]?.value == "true")
        #expect(s["transport"]?.value == "auto" && s["transport"]?.source == "default")

        // The printed configuration, read back as the only input, prints the same values.
        let printed = try write(out, "printed.yaml", in: dir)
        let (again, reread, rerr) = try run(["worker", "--config", printed, "--print-config"])
        #expect(again == 0, "\(rerr)")
        let t = settings(reread)
        #expect(Set(s.keys) == Set(t.keys))
        for (key, value) in s { #expect(t[key]?.value == value.value, "\(key) changed when read back") }
    }

    @Test func everyFlagOfEverySubcommandIsPrintedAndReadsBack() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for subcommand in ["coordinator", "worker", "local"] {
            let (status, out, err) = try run([subcommand, "--model", "/models/x", "--print-config"])
            #expect(status == 0, "\(subcommand): \(err)")
            // Every long flag in --help has a line (set, defaulted or commented out).
            let (_, help, _) = try run([subcommand, "--help"])
            let flags = Set(help.split(separator: "\n").compactMap { line -> String? in
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                guard trimmed.hasPrefix("--") else { return nil }
                return String(trimmed.dropFirst(2).prefix { $0.isLetter || $0.isNumber || $0 == "-" })
            }).subtracting(["help", "version", "config", "print-config"])
            #expect(!flags.isEmpty)
            for flag in flags {
                let named = out.contains("\n\(flag):") || out.contains("\n# \(flag):")
                    || out.contains("\nno-\(flag):")
                #expect(named, "\(subcommand): --\(flag) is missing from --print-config")
            }
            let printed = try write(out, "\(subcommand).yaml", in: dir)
            let (again, reread, rerr) = try run([subcommand, "--config", printed, "--print-config"])
            #expect(again == 0, "\(subcommand): \(rerr)")
            #expect(settings(reread).mapValues(\.value) == settings(out).mapValues(\.value), "\(subcommand)")
        }
    }

    @Test func badFilesAndValuesAreRefusedNamingTheFileAndTheKey() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, [String: String], String)] = [
            ("model: /m\nbogus-flag: 1\n", [:], "unknown key 'bogus-flag' for `jindoud worker`"),
            ("model: [a, b]\n", [:], "'model' takes one value"),
            ("model: /m\nno-prefault: sometimes\n", [:], "'no-prefault' is a flag: give true or false"),
            ("- model\n- /m\n", [:], "must be a mapping of flag names to values"),
            ("model: /m\nlisten: [1\n", [:], "is not valid YAML"),
            ("model: /m\nlisten: nowhere\n", [:], "(--listen was set by"),
            ("model: /m\nconfig: other.yaml\n", [:], "`config` cannot be set in a config file"),
            ("model: /m\n", ["JINDOU_NO_PREFAULT": "sometimes"], "JINDOU_NO_PREFAULT=sometimes: a flag takes true or false"),
        ]
        for (index, (text, environment, message)) in cases.enumerated() {
            let file = try write(text, "bad-\(index).yaml", in: dir)
            let (status, _, err) = try run(["worker", "--config", file], environment: environment)
            #expect(status == 64, "case \(index): exit \(status)")
            #expect(err.contains(message), "case \(index): \(err)")
            if !environment.isEmpty || index == 5 { continue }
            #expect(err.contains(file), "case \(index) does not name the file: \(err)")
        }
        let (status, _, err) = try run(["worker", "--config", dir.appendingPathComponent("missing.yaml").path])
        #expect(status == 64 && err.contains("cannot read config file"), "\(err)")
    }
}

/// A `jindoud` child process started with `arguments` (plus `environment`), after its
/// `ready URL` line.
final class DaemonProcess: @unchecked Sendable {
    // @unchecked: set once in init; the Process is only signalled and waited on.
    let process: Process
    let url: String

    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        process = Process()
        process.executableURL = try Executable("jindoud").url
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        guard let line = readLine(stdout.fileHandleForReading), line.hasPrefix("ready ") else {
            process.terminate()
            throw HarnessError("jindoud \(arguments.joined(separator: " ")) did not become ready")
        }
        url = String(line.dropFirst("ready ".count))
    }

    func kill(_ signal: Int32 = SIGTERM) {
        guard process.isRunning else { return }
        Foundation.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    func stop() { kill(SIGTERM) }
}
