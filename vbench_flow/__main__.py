from vbench_flow.cli import main

main()
