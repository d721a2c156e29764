namespace VmNet.Cli;

/// <summary>
/// The one place where an exception becomes what the user reads and the exit code: a <see cref="VmNetException"/>
/// (libvirt's and the kernel's errors among them) says what failed and what to do; anything else is a bug in vmnet,
/// said as such, without a stack trace (VMNET_DEBUG=1 shows it).
/// </summary>
public static class ErrorTranslator
{
    public static (string Message, int ExitCode) Describe(Exception e) => e switch
    {
        VmNetException v => (v.Message, v.ExitCode),
        OperationCanceledException => ("interrupted", ExitCodes.Failure),
        _ => ($"internal error: {e.GetType().Name}: {e.Message}\nThis is a bug in vmnet; rerun with VMNET_DEBUG=1 for the stack trace and report it.", ExitCodes.Failure),
    };
}
