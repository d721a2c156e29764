namespace VmNet;

public static class Program
{
    public static int Main(string[] args) => Cli.VmNetCli.Run(args);
}
