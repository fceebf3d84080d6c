import Foundation

/// Where tests put the files they write: one directory per test process under the system's
/// temporary directory, removed when the process exits, so a test run leaves nothing behind
/// (files of a run that crashed stay together in one `jindou-tests-<pid>` directory).
public enum Scratch {
    public static let directory: String = {
        let path = NSTemporaryDirectory() + "jindou-tests-\(getpid())/"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Scratch.directory) }
        return path
    }()

    /// `directory` as a file URL.
    public static var url: URL { URL(fileURLWithPath: directory, isDirectory: true) }
}
