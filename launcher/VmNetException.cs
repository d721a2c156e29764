namespace VmNet;

/// <summary>Process exit codes, named once.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    public const int Failure = 1;
    public const int InvalidInput = 2;
    public const int HostCannotServe = 3;
}

/// <summary>An error meant for the user: its message says what failed and what to do; no stack trace is shown.</summary>
public class VmNetException(string message, int exitCode = ExitCodes.Failure, Exception? inner = null)
    : Exception(message, inner)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>The host cannot serve the request: a port is missing, no VF is free, SR-IOV is off.</summary>
public sealed class HostException(string message) : VmNetException(message, ExitCodes.HostCannotServe);
