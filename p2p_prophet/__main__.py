from p2p_prophet.cli import main

main()
