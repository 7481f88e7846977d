from extractor.service import main

main()
