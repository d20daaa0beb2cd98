from headstart.app.cli import main

if __name__ == "__main__":     # guarded: --jobs worker processes (spawn) import this module
    main()
